//! `sosna call`: one call to any Slave service through a locator.

use anyhow::Context;

pub fn call(
    locator: &str,
    timeout_secs: u64,
    service: &str,
    method: &str,
    args: &[String],
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let timeout = std::time::Duration::from_secs(timeout_secs);
    let call = sosna_slave::client::call_cli(locator, service, method, args);
    let lines = rt.block_on(async { tokio::time::timeout(timeout, call).await });
    let lines = lines.with_context(|| format!("no reply within {timeout:?}"))??;
    for line in lines {
        println!("{line}");
    }
    Ok(())
}
