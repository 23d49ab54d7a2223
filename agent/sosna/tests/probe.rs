//! The health check's probe container on the real runtime (namespaces, cgroups, seccomp,
//! overlay root, shim): the image is made and stored locally, with no registry.

use sosna_testkit::fixture::fixture;

/// The agent binary, which is the containers' shim.
const SHIM: &str = env!("CARGO_BIN_EXE_sosna");

use sosna_runtime::probe;
use sosna_runtime::TaskSpec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_the_probe_container_runs_from_a_locally_made_image() {
    let f = fixture(SHIM).await;
    // Twice: the second import finds the blobs and layers already stored.
    for _ in 0..2 {
        probe::run(&f.rt).await.expect("the probe container runs");
    }
    let images = f.rt.images().unwrap();
    let rec = images
        .iter()
        .find(|i| i.reference == probe::REFERENCE)
        .expect("the probe image is stored");
    assert_eq!(rec.layers.len(), 1);
    assert!(f.rt.ps().is_empty(), "probe containers are removed");

    // It is an ordinary image for the runtime: a task on it gets the program's exit code.
    let id =
        f.rt.run(TaskSpec {
            image: probe::REFERENCE.into(),
            args: vec!["/probe".into()],
            ..TaskSpec::default()
        })
        .await
        .unwrap();
    let outcome = f.rt.wait(&id).await.unwrap();
    assert_eq!(outcome.exit_code, Some(probe::EXIT_CODE), "{outcome}");
    f.rt.remove(&id, true).await.unwrap();
}
