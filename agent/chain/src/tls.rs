//! One TLS crypto provider for the process. reqwest is built without a bundled provider
//! so that only ring is linked; whoever builds an HTTP client first installs it.

/// Installs ring as rustls's process-wide provider; later calls do nothing.
pub fn ensure_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
