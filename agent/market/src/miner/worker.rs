//! A miner's task worker: the hub it joined offers replicas of units; the worker answers
//! at once, runs each through the runtime in the background, signs the result's digest
//! for the Verification contract, and reports it back to the hub over the bus.

use std::sync::Arc;
use std::time::Duration;

use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::Eip712Domain;
use libp2p::PeerId;
use tokio::sync::Semaphore;

use super::work::execute;
use sosna_bus::Bus;
use sosna_proto::attest;
use sosna_proto::bus::envelope::now_ms;
use sosna_proto::bus::messages::{
    Request, Response, TaskOffer, TaskOutcome, TaskReport, MAX_RESULT,
};
use sosna_proto::task::TaskSpec;
use sosna_runtime::Runtime;

/// How often a report is retried while the hub cannot be reached.
const REPORT_ATTEMPTS: u32 = 6;

#[derive(Clone)]
pub struct Worker {
    bus: Bus,
    runtime: Runtime,
    key: PrivateKeySigner,
    domain: Eip712Domain,
    slots: Arc<Semaphore>,
    /// Fault injection for test images: report a wrong result (a cheating miner).
    #[cfg(feature = "fault-injection")]
    cheat: bool,
}

impl Worker {
    pub fn new(
        bus: Bus,
        runtime: Runtime,
        key: PrivateKeySigner,
        domain: Eip712Domain,
        slots: usize,
    ) -> Worker {
        Worker {
            bus,
            runtime,
            key,
            domain,
            slots: Arc::new(Semaphore::new(slots.max(1))),
            #[cfg(feature = "fault-injection")]
            cheat: false,
        }
    }

    /// Fault injection for test images: this worker forges every result it reports.
    #[cfg(feature = "fault-injection")]
    pub fn forging(mut self) -> Worker {
        self.cheat = true;
        self
    }

    /// Takes or refuses `offer` from the hub at `hub`; a taken offer runs in the
    /// background and is reported when done.
    pub fn offer(&self, hub: PeerId, offer: TaskOffer) -> Response {
        let mut spec: TaskSpec = match serde_json::from_str(&offer.spec) {
            Ok(s) => s,
            Err(e) => return Response::Refused(format!("task spec: {e}")),
        };
        if let Err(e) = spec.validate() {
            return Response::Refused(format!("task spec: {e}"));
        }
        // Every replica runs the same bytes: the hub pins the image, the pull checks the
        // registry's content against the pin.
        if spec.pinned_digest().is_none() {
            return Response::Refused(format!(
                "task image {} is not pinned to a manifest digest",
                spec.image
            ));
        }
        // The task dies at the offer's deadline (or this node's cap, if sooner).
        let left_secs = offer.deadline_ms.saturating_sub(now_ms()) / 1000;
        if left_secs == 0 {
            return Response::Refused("the offer's deadline has passed".into());
        }
        let wall = left_secs.min(self.runtime.caps().wall_secs);
        spec.timeout_secs = match spec.timeout_secs {
            0 => wall,
            t => t.min(wall),
        };
        if let Err(e) = self.runtime.caps().apply(&mut spec.clone()) {
            return Response::Refused(e.to_string());
        }
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            return Response::Refused("busy".into());
        };
        let worker = self.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            // Pulled first, apart, so the hub can tell pull time from run time. A failed
            // pull is not the end: a stored copy may still run.
            if let Err(e) = worker.runtime.pull(&spec.image, &|_| {}).await {
                tracing::info!("market: pulling {}: {e}", spec.image);
            }
            let pull_ms = started.elapsed().as_millis() as u64;
            let outcome = worker.run(&offer, spec).await;
            let run_ms = started.elapsed().as_millis() as u64 - pull_ms;
            drop(slot);
            worker
                .report(
                    hub,
                    TaskReport {
                        unit: offer.unit.id,
                        outcome,
                        pull_ms,
                        run_ms,
                    },
                )
                .await;
        });
        Response::Accepted
    }

    async fn run(&self, offer: &TaskOffer, spec: TaskSpec) -> TaskOutcome {
        tracing::info!("market: running unit {} ({})", offer.unit.id, spec.image);
        #[cfg_attr(not(feature = "fault-injection"), allow(unused_mut))]
        let mut bundle = match execute(&self.runtime, spec).await {
            Ok(b) => b,
            Err(e) => return TaskOutcome::Failed(e.to_string()),
        };
        if bundle.stdout.len() > MAX_RESULT {
            return TaskOutcome::Failed(format!(
                "the result's {} bytes of stdout exceed the {MAX_RESULT}-byte limit",
                bundle.stdout.len()
            ));
        }
        #[cfg(feature = "fault-injection")]
        if self.cheat {
            bundle = sosna_proto::result::ResultBundle {
                image: bundle.image,
                exit_code: bundle.exit_code,
                stdout: b"forged result\n".to_vec(),
            };
        }
        match attest::sign(&self.key, &self.domain, &offer.unit, bundle.digest()) {
            Ok(attestation) => TaskOutcome::Done {
                image: bundle.image,
                exit_code: bundle.exit_code,
                stdout: bundle.stdout,
                attestation,
            },
            Err(e) => TaskOutcome::Failed(e.to_string()),
        }
    }

    async fn report(&self, hub: PeerId, report: TaskReport) {
        let unit = report.unit;
        let mut delay = Duration::from_millis(500);
        for attempt in 1..=REPORT_ATTEMPTS {
            match self
                .bus
                .request(hub, Vec::new(), Request::Report(report.clone()))
                .await
            {
                Ok((_, Response::Received)) => {
                    tracing::info!("market: reported unit {unit}");
                    return;
                }
                Ok((_, other)) => {
                    tracing::warn!("market: hub answered report of {unit} with {other:?}");
                    return;
                }
                Err(e) => {
                    tracing::info!("market: reporting {unit} (attempt {attempt}): {e}");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        tracing::warn!("market: gave up reporting unit {unit}; the hub will re-dispatch it");
    }
}
