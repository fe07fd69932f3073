//! `runner soak --hub`: the soak as one client of a hub it starts (this very program, `runner
//! hub`), beside a second client (`runner run --hub`, streaming some of the same symbols), with
//! chaos aimed at every party: the hub's worker, the hub, the other client (SIGKILL and
//! SIGSTOP). A party killed is started again; one stopped is continued after a while.
//!
//! Invariants: the hub and the other client are this soak's children, ended (SIGTERM, then
//! SIGKILL) when it ends; the soak's own checks (requests, bars, orders) run unchanged through
//! the hub, its bars' gaps declared by the hub's word (`Event::Feed` resubscribed) or by its
//! own attaching again.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use base::random::XorShift;
use base::signal::ProcessSignal;
use parking_lot::Mutex;

use super::state::{soak_symbol, Recovery, Soak, ORDER_ACK_DELAY_MS, RECOVERY_LIMIT};
use crate::config::Config;
use crate::worker_setup::HubTarget;

/// The soak's name at its hub.
const CLIENT: &str = "soak";
/// Symbols the other client streams (the soak's first ones: shared feeds).
const OTHER_SYMBOLS: usize = 3;
/// How long a stopped party stays stopped.
const STOPPED_FOR: Duration = Duration::from_millis(2500);

/// The hub and the other client.
pub(super) struct HubParties {
    exe: PathBuf,
    dir: PathBuf,
    name: String,
    hub_config: PathBuf,
    other_config: PathBuf,
    hub: Mutex<Option<Child>>,
    other: Mutex<Option<Child>>,
}

impl HubParties {
    /// Starts a hub with the soak's configuration `cfg` (and its simulated broker's fault
    /// `faults`, as text), and the other client; waits for both to be up.
    pub(super) fn start(cfg: &Config, faults: &str) -> Result<HubParties> {
        let exe = bridge::platform::own_executable().context("the runner's executable")?;
        let base = std::env::temp_dir().join(format!("ibbridge-soak-hub-{}", std::process::id()));
        std::fs::create_dir_all(&base).context("the soak's hub directory")?;
        let hub_config = base.join("hub.toml");
        let mut hub = cfg.clone();
        // The broker's book outlives a hub killed and started again, as a real broker's does.
        hub.sim.orders_file = Some(base.join("hub.journal"));
        std::fs::write(&hub_config, hub.to_toml()).context("the hub's configuration")?;
        let mut other = cfg.clone();
        // The soak streams bars of 1 s: so does the other client, with a short history.
        other.history.bar_seconds = 1;
        other.history.duration_seconds = 600;
        other.trading.enabled = false;
        other.symbols = (0..OTHER_SYMBOLS as u32).map(soak_symbol).collect();
        let other_config = base.join("other.toml");
        std::fs::write(&other_config, other.to_toml())
            .context("the other client's configuration")?;
        let parties = HubParties {
            exe,
            dir: base.join("hubs"),
            name: format!("soak-{}", std::process::id()),
            hub_config,
            other_config,
            hub: Mutex::new(None),
            other: Mutex::new(None),
        };
        parties.spawn_hub(faults)?;
        parties.spawn_other()?;
        Ok(parties)
    }

    /// Where the soak attaches.
    pub(super) fn target(&self) -> HubTarget {
        HubTarget {
            dir: self.dir.clone(),
            name: self.name.clone(),
            client: CLIENT.to_string(),
            wait: RECOVERY_LIMIT,
        }
    }

    /// `args` of this program, its log appended to `<log>.log` beside the configurations.
    fn command(&self, args: &[&str], log: &str) -> Command {
        let mut cmd = Command::new(&self.exe);
        let file = self.hub_config.with_file_name(format!("{log}.log"));
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .map_or_else(|_| Stdio::null(), Stdio::from);
        cmd.args(args)
            .env(bridge::channel::ENV_HUB_DIR, &self.dir)
            .env_remove("RUNNER_SIM_FAULTS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        cmd
    }

    fn spawn_hub(&self, faults: &str) -> Result<()> {
        let config = self.hub_config.to_string_lossy().into_owned();
        let child = self
            .command(&["hub", "--name", &self.name, "--config", &config], "hub")
            .env("RUNNER_SIM_FAULTS", faults)
            .spawn()
            .context("starting the hub")?;
        *self.hub.lock() = Some(child);
        let until = Instant::now() + RECOVERY_LIMIT;
        while !bridge::channel::hub_running(&self.dir, &self.name)
            || !bridge::channel::socket_path(&self.dir, &self.name).exists()
        {
            anyhow::ensure!(Instant::now() < until, "the hub did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn spawn_other(&self) -> Result<()> {
        let config = self.other_config.to_string_lossy().into_owned();
        let args = [
            "run",
            "--duration",
            "0",
            "--hub",
            &self.name,
            "--client",
            "other",
            "--config",
            &config,
        ];
        let child = self
            .command(&args, "other")
            .spawn()
            .context("starting the other client")?;
        *self.other.lock() = Some(child);
        Ok(())
    }

    fn pid(party: &Mutex<Option<Child>>) -> Option<u32> {
        party.lock().as_ref().map(Child::id)
    }

    /// The hub's worker, as the hub's status says.
    fn worker_pid(&self) -> Option<u32> {
        crate::hub::read_status(&self.dir, &self.name)
            .ok()
            .and_then(|s| s.worker_pid)
    }

    /// Reaps a party that ended and starts it again.
    fn restart(&self, hub: bool, faults: &str) {
        let party = if hub { &self.hub } else { &self.other };
        if let Some(mut child) = party.lock().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let started = if hub {
            self.spawn_hub(faults)
        } else {
            self.spawn_other()
        };
        if let Err(e) = started {
            tracing::error!("{e:#}");
        }
    }

    /// Ends both (SIGTERM, then SIGKILL after 10 s) and removes what they left, unless
    /// `keep` (the soak failed: their logs are kept, and where is said).
    pub(super) fn stop(&self, keep: bool) {
        for party in [&self.other, &self.hub] {
            let Some(mut child) = party.lock().take() else {
                continue;
            };
            let _ = base::signal::send(child.id(), ProcessSignal::Continue);
            let _ = base::signal::send(child.id(), ProcessSignal::Terminate);
            let until = Instant::now() + Duration::from_secs(10);
            while Instant::now() < until && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(base) = self.hub_config.parent() {
            if keep {
                eprintln!("the hub's and the other client's logs: {}", base.display());
            } else {
                let _ = std::fs::remove_dir_all(base);
            }
        }
    }
}

impl Soak<'_> {
    /// Chaos through a hub: every 3 to 8 s one fault, on the hub's worker (killed, stopped,
    /// killed mid-order), the hub (killed and started again, or stopped for a while) or the
    /// other client (the same), each timed until the soak is answered through the hub again
    /// (for the other client: until it is attached again).
    pub(super) fn inject_hub_chaos(&self, parties: &HubParties, faults: &str) {
        let mut rng = XorShift::new(0x4B1B ^ u64::from(std::process::id()));
        while !self.is_over() {
            let wait = Duration::from_millis(3000 + rng.below(5000));
            self.sleep_until(Instant::now() + wait, Duration::from_millis(20));
            if self.is_over()
                || self.until.saturating_duration_since(Instant::now()) < Duration::from_secs(8)
            {
                return;
            }
            let choices = if self.settings.order_rate > 0 { 7 } else { 6 };
            let at = Instant::now();
            let (action, recovered_ms) = match rng.below(choices) {
                0 | 1 | 6 => {
                    let Some(pid) = parties.worker_pid() else {
                        continue;
                    };
                    let (action, signal) = match rng.below(2) {
                        _ if self.settings.order_rate > 0 && rng.below(3) == 0 => {
                            self.wait_for_an_order_in_flight();
                            ("hub-worker-kill-mid-order", ProcessSignal::Kill)
                        }
                        0 => ("hub-worker-kill", ProcessSignal::Kill),
                        _ => ("hub-worker-stop", ProcessSignal::Stop),
                    };
                    let at = Instant::now();
                    let _ = base::signal::send(pid, signal);
                    tracing::warn!(pid, action, "chaos");
                    (
                        action,
                        self.answered_after(at, || parties.worker_pid().is_some_and(|p| p != pid)),
                    )
                }
                2 | 3 => {
                    let Some(pid) = HubParties::pid(&parties.hub) else {
                        continue;
                    };
                    let kill = rng.below(2) == 0;
                    tracing::warn!(pid, kill, "chaos: the hub");
                    if kill {
                        let _ = base::signal::send(pid, ProcessSignal::Kill);
                        std::thread::sleep(Duration::from_millis(500));
                        parties.restart(true, faults);
                        (
                            "hub-kill",
                            self.answered_after(at, || {
                                self.sup.stats().worker_pid.is_some_and(|p| p != pid)
                            }),
                        )
                    } else {
                        let _ = base::signal::send(pid, ProcessSignal::Stop);
                        std::thread::sleep(STOPPED_FOR);
                        let _ = base::signal::send(pid, ProcessSignal::Continue);
                        ("hub-stop", self.answered_after(at, || true))
                    }
                }
                _ => {
                    let Some(pid) = HubParties::pid(&parties.other) else {
                        continue;
                    };
                    if rng.below(2) == 0 {
                        let _ = base::signal::send(pid, ProcessSignal::Kill);
                        tracing::warn!(pid, "chaos: the other client killed");
                        parties.restart(false, faults);
                        ("other-client-kill", self.other_attached_after(parties, at))
                    } else {
                        let _ = base::signal::send(pid, ProcessSignal::Stop);
                        tracing::warn!(pid, "chaos: the other client stopped");
                        std::thread::sleep(STOPPED_FOR);
                        let _ = base::signal::send(pid, ProcessSignal::Continue);
                        ("other-client-stop", self.other_attached_after(parties, at))
                    }
                }
            };
            self.recoveries.lock().push(Recovery {
                at_s: at.duration_since(self.started).as_secs_f64(),
                action,
                recovered_ms,
            });
        }
    }

    fn wait_for_an_order_in_flight(&self) {
        let waited = Instant::now();
        while !self
            .order_in_flight
            .load(std::sync::atomic::Ordering::Acquire)
            && waited.elapsed() < Duration::from_secs(2)
            && !self.is_over()
        {
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(Duration::from_millis(ORDER_ACK_DELAY_MS / 4));
    }

    /// Milliseconds from `at` until `ready` holds and a ping through the hub is answered;
    /// `None` if not within [`RECOVERY_LIMIT`].
    fn answered_after(&self, at: Instant, ready: impl Fn() -> bool) -> Option<u64> {
        while at.elapsed() < RECOVERY_LIMIT && !self.is_over() {
            let ping = bridge::protocol::Request::Ping {
                payload: Vec::new(),
            };
            if ready() && self.sup.request(ping, Duration::from_secs(5)).is_ok() {
                return Some(at.elapsed().as_millis() as u64);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// Milliseconds from `at` until the other client is attached to the hub again.
    fn other_attached_after(&self, parties: &HubParties, at: Instant) -> Option<u64> {
        let pid = HubParties::pid(&parties.other)?;
        while at.elapsed() < RECOVERY_LIMIT && !self.is_over() {
            let attached = crate::hub::read_status(&parties.dir, &parties.name)
                .is_ok_and(|s| s.clients.iter().any(|c| c.name == "other" && c.pid == pid));
            if attached {
                return Some(at.elapsed().as_millis() as u64);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}
