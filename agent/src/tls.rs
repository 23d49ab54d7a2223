//! One TLS crypto provider for the process. reqwest (under both the registry client and the
//! chain client) is built without a bundled provider so that only ring is linked; whoever
//! builds an HTTP client first calls [`ensure_provider`].

/// Installs ring as rustls's process-wide provider; later calls do nothing.
pub fn ensure_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
