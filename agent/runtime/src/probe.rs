//! A container the node can start with no registry and no network: proof that namespaces,
//! cgroups, seccomp, the overlay root and the shim all work on this boot. The health check
//! after an update runs it before the new slot is marked good.
//!
//! The image is one layer holding a 132-byte static program that exits with [`EXIT_CODE`];
//! it is generated here rather than shipped, so the image carries no extra userland and
//! the probe cannot pass by accident (an exit code of 0 or a shell's 127 would not match).

use std::time::Duration;

use super::build::{Image, LayerBuilder};
use super::task::{NetworkMode, TaskSpec};
use super::{Runtime, RuntimeError};

/// Where the probe image is kept in the store; never pulled.
pub const REFERENCE: &str = "sosna.local/probe:1";
/// What the probe program exits with.
pub const EXIT_CODE: i32 = 42;
const PROGRAM: &str = "/probe";
const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no probe program for architecture {0}")]
    Arch(String),
    #[error("probe container: {0}")]
    Runtime(#[from] RuntimeError),
    #[error("probe container ended with {0}, not exit code {EXIT_CODE}")]
    Outcome(String),
    #[error("probe container did not end within {0:?}")]
    Timeout(Duration),
}

/// Imports the probe image (idempotent), runs it, and checks its exit code.
pub async fn run(rt: &Runtime) -> Result<(), ProbeError> {
    let arch = super::pull::host_arch();
    let program = program(arch).ok_or_else(|| ProbeError::Arch(arch.to_owned()))?;
    let image = Image {
        arch: arch.to_owned(),
        layers: vec![LayerBuilder::default()
            .dir("dev")
            .dir("proc")
            .dir("sys")
            .dir("tmp")
            .file(PROGRAM, program, 0o755)
            .finish()],
        cmd: vec![PROGRAM.to_owned()],
        env: Vec::new(),
    };
    rt.import(REFERENCE, &image).await?;
    let id = rt
        .run(TaskSpec {
            image: REFERENCE.to_owned(),
            args: vec![PROGRAM.to_owned()],
            network: NetworkMode::None,
            timeout_secs: TIMEOUT.as_secs(),
            ..TaskSpec::default()
        })
        .await?;
    let outcome = tokio::time::timeout(TIMEOUT + Duration::from_secs(10), rt.wait(&id)).await;
    let _ = rt.remove(&id, true).await;
    let outcome = outcome.map_err(|_| ProbeError::Timeout(TIMEOUT))??;
    if outcome.exit_code == Some(EXIT_CODE) {
        Ok(())
    } else {
        Err(ProbeError::Outcome(outcome.to_string()))
    }
}

/// A static ELF64 executable for `arch` (OCI name) that calls exit([`EXIT_CODE`]): one
/// header, one loadable segment covering the whole file, then the code.
pub fn program(arch: &str) -> Option<Vec<u8>> {
    let code = EXIT_CODE as u32;
    let (machine, text): (u16, Vec<u8>) = match arch {
        // mov edi, 42; mov eax, 60 (exit); syscall
        "amd64" => (62, {
            let mut t = vec![0xbf];
            t.extend(code.to_le_bytes());
            t.extend([0xb8, 60, 0, 0, 0, 0x0f, 0x05]);
            t
        }),
        // movz x0, #42; movz x8, #93 (exit); svc #0
        "arm64" => (183, {
            let movz = |reg: u32, imm: u32| (0xd280_0000 | (imm << 5) | reg).to_le_bytes();
            let mut t = movz(0, code).to_vec();
            t.extend(movz(8, 93));
            t.extend(0xd400_0001u32.to_le_bytes());
            t
        }),
        _ => return None,
    };
    const BASE: u64 = 0x40_0000;
    const EHDR: u64 = 64;
    const PHDR: u64 = 56;
    let size = EHDR + PHDR + text.len() as u64;
    let mut elf = Vec::with_capacity(size as usize);
    elf.extend([0x7f, b'E', b'L', b'F', 2, 1, 1, 0]); // ELF64, little-endian, SysV
    elf.extend([0; 8]);
    elf.extend(2u16.to_le_bytes()); // ET_EXEC
    elf.extend(machine.to_le_bytes());
    elf.extend(1u32.to_le_bytes());
    elf.extend((BASE + EHDR + PHDR).to_le_bytes()); // entry: the code after the headers
    elf.extend(EHDR.to_le_bytes()); // program headers right after this one
    elf.extend(0u64.to_le_bytes()); // no section headers
    elf.extend(0u32.to_le_bytes());
    elf.extend((EHDR as u16).to_le_bytes());
    elf.extend((PHDR as u16).to_le_bytes());
    elf.extend(1u16.to_le_bytes());
    elf.extend([0; 6]); // section header size, count, name index
    elf.extend(1u32.to_le_bytes()); // PT_LOAD
    elf.extend(5u32.to_le_bytes()); // R + X
    elf.extend(0u64.to_le_bytes());
    elf.extend(BASE.to_le_bytes());
    elf.extend(BASE.to_le_bytes());
    elf.extend(size.to_le_bytes());
    elf.extend(size.to_le_bytes());
    elf.extend(0x1000u64.to_le_bytes());
    elf.extend(text);
    Some(elf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_program_runs_here_and_exits_with_the_code() {
        let arch = super::super::pull::host_arch();
        let bytes = program(arch).expect("a program for the host");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("probe");
        std::fs::write(&path, &bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let status = std::process::Command::new(&path).status().unwrap();
        assert_eq!(status.code(), Some(EXIT_CODE));
    }

    #[test]
    fn both_architectures_have_a_program_and_others_none() {
        for arch in ["amd64", "arm64"] {
            let p = program(arch).unwrap();
            assert_eq!(&p[..4], b"\x7fELF");
            assert_eq!(p.len(), 64 + 56 + 12);
        }
        assert!(program("riscv64").is_none());
    }
}
