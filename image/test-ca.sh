#!/usr/bin/env bash
# Makes a throwaway X.509 CA and a bundle-signing certificate it issued, for tests only:
#   DIR/ca.cert.pem (the keyring the image trusts), DIR/signing.{key,cert}.pem
# Usage: image/test-ca.sh DIR [NAME]   (does nothing if DIR/ca.cert.pem exists)
# Real fleets keep their CA key offline and pass SOSNA_OTA_KEYRING, SOSNA_OTA_CERT and
# SOSNA_OTA_KEY to image/build.sh instead (see README, "Over-the-air updates").
set -euo pipefail
dir=$1 name=${2:-sosna test}
[ ! -f "$dir/ca.cert.pem" ] || exit 0
mkdir -p "$dir"
cd "$dir"
cat >ext.cnf <<'CNF'
[req]
distinguished_name=dn
[dn]
[sosna_ca]
basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
[sosna_signer]
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
CNF
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
  -subj "/O=$name/CN=$name CA" -keyout ca.key.pem -out ca.cert.pem \
  -extensions sosna_ca -config ext.cnf 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -subj "/O=$name/CN=$name bundle signer" -keyout signing.key.pem -out signing.csr -config ext.cnf 2>/dev/null
openssl x509 -req -in signing.csr -CA ca.cert.pem -CAkey ca.key.pem -CAcreateserial -days 3650 \
  -extfile ext.cnf -extensions sosna_signer -out signing.cert.pem 2>/dev/null
rm -f signing.csr ext.cnf ca.cert.srl
echo "test CA: $dir/ca.cert.pem (signer $dir/signing.cert.pem)" >&2
