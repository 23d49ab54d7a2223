//! `./dev demo`: boots the built image in QEMU, shows its console live until the agent
//! is READY, then presses Ctrl-Alt-Del and shows the orderly shutdown.

use std::io::Write;
use std::time::Duration;

use sosna_qemu_tests::{HarnessError, Image, Vm, VmConfig};

const TIMEOUT: Duration = Duration::from_secs(120);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let image = Image::built()?;
    let mut vm = Vm::boot(VmConfig::new(image))?;
    let mut shown = 0;
    let mut show = |vm: &Vm| {
        let text = vm.console();
        print!("{}", &text[shown..]);
        let _ = std::io::stdout().flush();
        shown = text.len();
    };
    // Poll in short slices so the console appears as it is printed.
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        match vm.wait_for("SOSNA READY", Duration::from_millis(200)) {
            Ok(_) => break,
            Err(HarnessError::Timeout { .. }) if std::time::Instant::now() < deadline => show(&vm),
            Err(e) => {
                show(&vm);
                return Err(e.into());
            }
        }
    }
    show(&vm);
    println!(
        "\n--- demo: agent is up after {:.1} s; pressing Ctrl-Alt-Del ---",
        vm.elapsed().as_secs_f64()
    );
    vm.ctrl_alt_del()?;
    vm.wait_exit(Duration::from_secs(30))?;
    show(&vm);
    println!("\n--- demo: guest shut down cleanly ---");
    Ok(())
}
