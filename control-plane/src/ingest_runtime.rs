//! Where usage ingestion runs. By default on the control plane's runtime, like everything
//! else. With `IngestPriority::Idle` it gets a thread of its own in Linux's `SCHED_IDLE`
//! class, with a current-thread runtime on it: rating and writing usage batches then run
//! only on CPU time no other thread wants, so on cores shared with gateways their bursts
//! stop delaying requests (measured with the whole process under `chrt --idle 0`: c=1 added
//! p99 halved). The SQLite writer connection is opened from that thread so its worker thread
//! inherits the class; the API, config pushes and budget leases keep the normal class.
//!
//! The cost: when the cores are saturated for long, ingestion barely runs and usage waits,
//! durable, in the gateways' spools until there is CPU to spare.

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::ControlPlaneError;

/// The scheduling class of usage ingestion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum IngestPriority {
    /// The control plane's runtime and threads.
    #[default]
    Normal,
    /// A thread of its own in `SCHED_IDLE` (Linux only).
    Idle,
}

/// The runtime ingestion runs on, when it has one of its own; stopped when dropped.
pub struct IngestRuntime {
    handle: Option<Handle>,
    _stop: Option<oneshot::Sender<()>>,
}

impl IngestRuntime {
    pub fn start(priority: IngestPriority) -> Result<Self, ControlPlaneError> {
        match priority {
            IngestPriority::Normal => Ok(Self {
                handle: None,
                _stop: None,
            }),
            IngestPriority::Idle => Self::start_idle(),
        }
    }

    /// The runtime to spawn ingestion on; `None` for the caller's own.
    pub fn handle(&self) -> Option<Handle> {
        self.handle.clone()
    }

    fn start_idle() -> Result<Self, ControlPlaneError> {
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("usage-ingest".into())
            .spawn(move || {
                let started = idle_class().and_then(|()| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())
                });
                match started {
                    Ok(runtime) => {
                        let _ = ready_tx.send(Ok(runtime.handle().clone()));
                        // The runtime runs its tasks while this waits; dropping the
                        // `IngestRuntime` ends it.
                        runtime.block_on(async {
                            let _ = stop_rx.await;
                        });
                    }
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                    }
                }
            })
            .map_err(|e| ControlPlaneError::Ingest(format!("starting its thread: {e}")))?;
        let handle = ready_rx
            .recv()
            .map_err(|_| ControlPlaneError::Ingest("its thread ended at start".into()))?
            .map_err(ControlPlaneError::Ingest)?;
        tracing::info!("usage ingestion runs in the SCHED_IDLE class");
        Ok(Self {
            handle: Some(handle),
            _stop: Some(stop_tx),
        })
    }
}

/// Moves the calling thread, and the threads it starts from now on, to `SCHED_IDLE`.
#[cfg(target_os = "linux")]
fn idle_class() -> Result<(), String> {
    use thread_priority::unix::{
        NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
        thread_native_id,
    };
    set_thread_priority_and_policy(
        thread_native_id(),
        thread_priority::ThreadPriority::Min,
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
    )
    .map_err(|e| format!("setting SCHED_IDLE: {e:?}"))
}

#[cfg(not(target_os = "linux"))]
fn idle_class() -> Result<(), String> {
    Err("the idle ingestion priority needs Linux's SCHED_IDLE".into())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    const SCHED_OTHER: u32 = 0;
    const SCHED_IDLE: u32 = 5;

    /// The calling thread's scheduling policy (field 41 of its `stat`).
    fn own_policy() -> Option<u32> {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
        // The command name may hold spaces: count fields after its closing paren.
        let after = stat.get(stat.rfind(')')? + 2..)?;
        after.split(' ').nth(38)?.parse().ok()
    }

    #[test]
    fn the_idle_runtime_runs_its_tasks_and_their_threads_in_sched_idle() {
        let ingest = IngestRuntime::start(IngestPriority::Idle).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        ingest.handle().unwrap().spawn(async move {
            let name = std::thread::current().name().map(str::to_owned);
            // A thread started from ingestion, as sqlx's SQLite worker is, inherits it.
            let child = std::thread::spawn(own_policy).join().unwrap();
            tx.send((name, own_policy(), child)).unwrap();
        });
        let (name, policy, child) = rx.recv().unwrap();
        assert_eq!(name.as_deref(), Some("usage-ingest"));
        assert_eq!((policy, child), (Some(SCHED_IDLE), Some(SCHED_IDLE)));
        assert_eq!(
            own_policy(),
            Some(SCHED_OTHER),
            "the caller keeps its class"
        );
    }

    #[test]
    fn normal_priority_has_no_runtime_of_its_own() {
        assert!(
            IngestRuntime::start(IngestPriority::Normal)
                .unwrap()
                .handle()
                .is_none()
        );
    }
}
