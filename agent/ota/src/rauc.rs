//! The agent's only way to RAUC: its `de.pengutronix.rauc.Installer` D-Bus interface on
//! the system bus, through zbus on the agent's tokio runtime.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use zbus::zvariant::{OwnedValue, Value};

/// The system bus the image's dbus-daemon listens on (see `image/ota.sh`).
pub const SYSTEM_BUS: &str = "unix:path=/run/dbus/system_bus_socket";

#[derive(Debug, thiserror::Error)]
pub enum RaucError {
    #[error("RAUC is not on the system bus after {0:?}: {1}")]
    NotUp(Duration, Box<zbus::Error>),
    #[error("RAUC {call}: {source}")]
    Call {
        call: &'static str,
        source: Box<zbus::Error>,
    },
    #[error("RAUC install failed (result {code}): {error}")]
    Install { code: i32, error: String },
    #[error("RAUC's signals ended before the install completed")]
    SignalsEnded,
    #[error("RAUC slot status: slot {slot}: field {field} is {found}, expected {expected}")]
    Field {
        slot: String,
        field: String,
        found: String,
        expected: &'static str,
    },
}

#[zbus::proxy(
    interface = "de.pengutronix.rauc.Installer",
    default_service = "de.pengutronix.rauc",
    default_path = "/"
)]
trait Installer {
    fn install_bundle(&self, source: &str, args: HashMap<&str, Value<'_>>) -> zbus::Result<()>;
    fn mark(&self, state: &str, slot_identifier: &str) -> zbus::Result<(String, String)>;
    fn get_slot_status(&self) -> zbus::Result<Vec<(String, HashMap<String, OwnedValue>)>>;
    fn get_primary(&self) -> zbus::Result<String>;
    #[zbus(signal)]
    fn completed(&self, result: i32) -> zbus::Result<()>;
    #[zbus(property)]
    fn operation(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn last_error(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn progress(&self) -> zbus::Result<(i32, String, i32)>;
    #[zbus(property)]
    fn compatible(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn boot_slot(&self) -> zbus::Result<String>;
}

/// An install's progress as RAUC reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub percent: i32,
    pub message: String,
    pub depth: i32,
}

/// One slot of `GetSlotStatus`, its fields as text (RAUC's keys, e.g. `state`,
/// `bootname`, `boot-status`, `bundle.version`).
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub name: String,
    pub fields: HashMap<String, String>,
}

impl Slot {
    pub fn get(&self, key: &str) -> &str {
        self.fields.get(key).map_or("", String::as_str)
    }
}

pub struct Rauc {
    proxy: InstallerProxy<'static>,
}

fn call(call: &'static str) -> impl FnOnce(zbus::Error) -> RaucError {
    move |source| RaucError::Call {
        call,
        source: Box::new(source),
    }
}

impl Rauc {
    /// Connects to the system bus and waits up to `wait` for RAUC to answer (at boot the
    /// agent starts it moments before).
    pub async fn connect(wait: Duration) -> Result<Rauc, RaucError> {
        let deadline = Instant::now() + wait;
        loop {
            let attempt = async {
                let conn = zbus::connection::Builder::address(SYSTEM_BUS)?
                    .build()
                    .await?;
                let proxy = InstallerProxy::new(&conn).await?;
                proxy.compatible().await?;
                Ok::<_, zbus::Error>(proxy)
            };
            match attempt.await {
                Ok(proxy) => return Ok(Rauc { proxy }),
                Err(e) if Instant::now() >= deadline => {
                    return Err(RaucError::NotUp(wait, Box::new(e)))
                }
                Err(e) => tracing::debug!("waiting for RAUC: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Installs a bundle (a path RAUC can read) and waits for `Completed`, reporting
    /// progress as it goes. RAUC checks the signature before it writes anything.
    pub async fn install(
        &self,
        bundle: &str,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<(), RaucError> {
        // Subscribe before starting, so neither the end nor a step can be missed.
        let mut done = self
            .proxy
            .receive_completed()
            .await
            .map_err(call("subscribe to Completed"))?;
        let mut steps = self.proxy.receive_progress_changed().await;
        self.proxy
            .install_bundle(bundle, HashMap::new())
            .await
            .map_err(call("InstallBundle"))?;
        loop {
            tokio::select! {
                signal = done.next() => {
                    let signal = signal.ok_or(RaucError::SignalsEnded)?;
                    let code = signal.args().map_err(call("Completed arguments"))?.result;
                    if code == 0 {
                        return Ok(());
                    }
                    let error = self.proxy.last_error().await.map_err(call("LastError"))?;
                    return Err(RaucError::Install { code, error });
                }
                Some(change) = steps.next() => {
                    if let Ok((percent, message, depth)) = change.get().await {
                        progress(&Progress { percent, message, depth });
                    }
                }
            }
        }
    }

    /// Marks the booted slot `good` or `bad`; returns RAUC's message.
    pub async fn mark_booted(&self, good: bool) -> Result<String, RaucError> {
        let state = if good { "good" } else { "bad" };
        let (_, message) = self
            .proxy
            .mark(state, "booted")
            .await
            .map_err(call("Mark"))?;
        Ok(message)
    }

    pub async fn slots(&self) -> Result<Vec<Slot>, RaucError> {
        let raw = self
            .proxy
            .get_slot_status()
            .await
            .map_err(call("GetSlotStatus"))?;
        Ok(slots_from_status(raw))
    }

    /// The bootname RAUC says this boot came from.
    pub async fn booted(&self) -> Result<String, RaucError> {
        self.proxy.boot_slot().await.map_err(call("BootSlot"))
    }

    pub async fn primary(&self) -> Result<String, RaucError> {
        self.proxy.get_primary().await.map_err(call("GetPrimary"))
    }
}

/// `GetSlotStatus`'s reply (`a(sa{sv})`) as slots with text fields.
pub fn slots_from_status(raw: Vec<(String, HashMap<String, OwnedValue>)>) -> Vec<Slot> {
    raw.into_iter()
        .map(|(name, fields)| Slot {
            name,
            fields: fields.into_iter().map(|(k, v)| (k, text(&v))).collect(),
        })
        .collect()
}

/// A status value as text: strings bare, numbers and booleans printed, anything else in
/// its D-Bus form.
fn text(v: &Value<'_>) -> String {
    match v {
        Value::Str(s) => s.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::U8(n) => n.to_string(),
        Value::I16(n) => n.to_string(),
        Value::U16(n) => n.to_string(),
        Value::I32(n) => n.to_string(),
        Value::U32(n) => n.to_string(),
        Value::I64(n) => n.to_string(),
        Value::U64(n) => n.to_string(),
        Value::Value(inner) => text(inner),
        other => format!("{other}"),
    }
}

/// The slot whose `state` is `booted`, checked against what RAUC says it booted.
pub fn booted_slot<'a>(slots: &'a [Slot], bootname: &str) -> Result<&'a Slot, RaucError> {
    let slot = slots
        .iter()
        .find(|s| s.get("bootname") == bootname && s.get("class") == "rootfs")
        .ok_or_else(|| RaucError::Field {
            slot: bootname.to_owned(),
            field: "bootname".into(),
            found: "absent".into(),
            expected: "a rootfs slot with this bootname",
        })?;
    if slot.get("state") != "booted" {
        return Err(RaucError::Field {
            slot: slot.name.clone(),
            field: "state".into(),
            found: format!("{:?}", slot.get("state")),
            expected: "\"booted\"",
        });
    }
    Ok(slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(name: &str, fields: &[(&str, &str)]) -> Slot {
        Slot {
            name: name.into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn values_read_as_text() {
        assert_eq!(text(&Value::from("booted")), "booted");
        assert_eq!(text(&Value::from(7u32)), "7");
        assert_eq!(text(&Value::from(true)), "true");
        assert_eq!(text(&Value::Value(Box::new(Value::from(-1i32)))), "-1");
    }

    #[test]
    fn the_booted_slot_must_say_so() {
        let slots = vec![
            slot(
                "rootfs.0",
                &[
                    ("bootname", "a"),
                    ("class", "rootfs"),
                    ("state", "inactive"),
                ],
            ),
            slot(
                "rootfs.1",
                &[("bootname", "b"), ("class", "rootfs"), ("state", "booted")],
            ),
        ];
        assert_eq!(booted_slot(&slots, "b").unwrap().name, "rootfs.1");
        let e = booted_slot(&slots, "a").unwrap_err();
        assert_eq!(
            e.to_string(),
            "RAUC slot status: slot rootfs.0: field state is \"inactive\", expected \"booted\""
        );
        assert!(booted_slot(&slots, "c").is_err());
    }
}
