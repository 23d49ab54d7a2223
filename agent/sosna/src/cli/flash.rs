//! `sosna flash IMAGE DEVICE`: write a disk image and read it back, with progress.

use anyhow::Context;

pub fn flash(image: &std::path::Path, device: &std::path::Path) -> anyhow::Result<()> {
    let mut last = (String::new(), 0u64);
    let r = sosna::flash::flash(image, device, &mut |phase, done, total| {
        // One line per phase and 10 %, not per chunk.
        let tenth = done * 10 / total.max(1);
        if (phase, tenth) != (last.0.as_str(), last.1) {
            eprintln!("{phase} {:>3} % ({done} of {total} bytes)", tenth * 10);
            last = (phase.to_owned(), tenth);
        }
    })
    .with_context(|| format!("flash {} to {}", image.display(), device.display()))?;
    println!(
        "flashed {} bytes to {} in {:.1} s, verified in {:.1} s, sha256 {}",
        r.bytes,
        device.display(),
        r.write_time.as_secs_f64(),
        r.verify_time.as_secs_f64(),
        r.sha256
    );
    Ok(())
}
