//! The control-plane outage scenario: c=1 with the control plane up, with its database
//! write-locked and with it stopped. The three conditions take turns inside every round (the
//! order rotating, like the arms inside a condition), so that the host's noise, which moves a
//! 1.5 s block's p50 by a hundred microseconds on a shared 2-core box, lands on all three
//! alike instead of on whichever phase ran during a noisy minute. Each condition is left the
//! way it was entered: the lock released, the control plane started again, and the gateway's
//! backlog of usage acknowledged before the next condition starts, so a catch-up burst of
//! ingestion never runs under another condition's blocks.

use std::time::Duration;

use serde::Serialize;

use super::arms::{ArmKind, Lab};
use super::loadgen::Block;
use super::scenarios::{ArmLatency, Load, Plan, Results, block, c1_only, reduce};
use super::stats::{Spread, interleave_order, iqr, median};

/// How the control plane is kept from the gateway during one condition's blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Condition {
    Up,
    DatabaseLocked,
    Stopped,
}

impl Condition {
    const ALL: [Condition; 3] = [Condition::Up, Condition::DatabaseLocked, Condition::Stopped];

    fn label(self) -> &'static str {
        match self {
            Condition::Up => "control plane up",
            Condition::DatabaseLocked => "control plane's database write-locked",
            Condition::Stopped => "control plane stopped",
        }
    }
}

/// How far a condition moved one arm's c=1 added p50: per round, the condition's block minus
/// the same round's control-plane-up block, then the median (and IQR) across rounds. The
/// forwarder never talks to the control plane, so its shift is how far the host's noise
/// alone moves a figure between blocks.
#[derive(Clone, Debug, Serialize)]
pub struct OutageShift {
    pub arm: ArmKind,
    pub database_locked_p50_us: Option<Spread<f64>>,
    pub stopped_p50_us: Option<Spread<f64>>,
}

/// Patience for the gateway's backlog to be acknowledged after a condition: its shipper
/// retries with up to 5 s of backoff, then the control plane ingests tens of thousands of
/// records.
const SHIPPED_PATIENCE: Duration = Duration::from_secs(90);

/// Runs the scenario and fills the `c1_control_plane_*`, `c1_database_locked` and
/// `c1_outage_shift` fields of `results`. A condition that cannot be entered (the lock or
/// the restart fails) is reported on stderr and leaves its field empty.
pub async fn run(lab: &mut Lab, plan: &Plan, results: &mut Results) {
    let Some(admin) = lab.arm(ArmKind::Switchyard).and_then(|a| a.admin.clone()) else {
        return;
    };
    let load = Load::Closed { concurrency: 1 };
    let arms: Vec<ArmKind> = c1_only(lab).iter().map(|a| a.kind).collect();
    // blocks[condition][arm]: one block per round.
    let mut blocks = vec![vec![Vec::<Block>::new(); arms.len()]; Condition::ALL.len()];
    let mut skipped = [false; Condition::ALL.len()];
    if let Err(err) = admin.wait_until_shipped(SHIPPED_PATIENCE).await {
        super::progress(&format!("before the outage scenario: {err:#}"));
    }
    for round in 0..plan.outage_rounds {
        for c in interleave_order(Condition::ALL.len(), round) {
            let condition = Condition::ALL[c];
            if skipped[c] {
                continue;
            }
            super::progress(&format!(
                "c=1, {}: round {}/{}",
                condition.label(),
                round + 1,
                plan.outage_rounds
            ));
            let lock = match condition {
                Condition::Up => None,
                Condition::DatabaseLocked => match admin.lock_database().await {
                    Ok(lock) => Some(lock),
                    Err(err) => {
                        super::progress(&format!("could not lock the database: {err:#}"));
                        skipped[c] = true;
                        continue;
                    }
                },
                Condition::Stopped => {
                    if !lab.stop_control_plane().await {
                        super::progress("no control plane to stop");
                        skipped[c] = true;
                        continue;
                    }
                    // Let the gateway see its streams break and start reconnecting, so the
                    // blocks measure the outage rather than its first second.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    None
                }
            };
            let up = c1_only(lab);
            for i in interleave_order(up.len(), round) {
                if let Some(targets) = &up[i].targets {
                    blocks[c][i].push(
                        block(&targets.fast, load, plan.warmup, plan.block, plan.timeout).await,
                    );
                }
            }
            drop(lock);
            if condition == Condition::Stopped
                && let Err(err) = lab.start_control_plane().await
            {
                // Without a control plane neither other condition can run again.
                super::progress(&format!("could not start the control plane again: {err:#}"));
                skipped = [true; Condition::ALL.len()];
                continue;
            }
            if condition != Condition::Up
                && let Err(err) = admin.wait_until_shipped(SHIPPED_PATIENCE).await
            {
                super::progress(&format!("after the {}: {err:#}", condition.label()));
            }
        }
    }

    let up = c1_only(lab);
    let reduced: Vec<Option<Vec<ArmLatency>>> = blocks
        .iter()
        .map(|per_arm| (!per_arm.iter().all(Vec::is_empty)).then(|| reduce(&up, per_arm)))
        .collect();
    let direct = arms.iter().position(|k| *k == ArmKind::Direct);
    results.c1_outage_shift = arms
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != direct)
        .map(|(i, kind)| OutageShift {
            arm: *kind,
            database_locked_p50_us: direct
                .and_then(|d| shift(&blocks, Condition::DatabaseLocked, i, d)),
            stopped_p50_us: direct.and_then(|d| shift(&blocks, Condition::Stopped, i, d)),
        })
        .collect();
    let [running, locked, stopped]: [Option<Vec<ArmLatency>>; 3] =
        reduced.try_into().unwrap_or_default();
    results.c1_control_plane_up = running;
    results.c1_database_locked = locked;
    results.c1_control_plane_stopped = stopped;
}

/// Arm `arm`'s added p50 in `condition` minus in the up condition, paired by round; `None`
/// when no round has both.
fn shift(
    blocks: &[Vec<Vec<Block>>],
    condition: Condition,
    arm: usize,
    direct: usize,
) -> Option<Spread<f64>> {
    let added = |c: Condition, round: usize| -> Option<f64> {
        let at = |i: usize| {
            blocks[c as usize][i]
                .get(round)
                .filter(|b| !b.hist.is_empty())
                .map(|b| b.hist.quantile_us(0.5))
        };
        Some(at(arm)? - at(direct)?)
    };
    let rounds = blocks[condition as usize][arm].len();
    let deltas: Vec<f64> = (0..rounds)
        .filter_map(|r| Some(added(condition, r)? - added(Condition::Up, r)?))
        .collect();
    (!deltas.is_empty()).then(|| Spread {
        median: median(&deltas),
        iqr: iqr(&deltas),
        rounds: deltas.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block whose every request took `us` microseconds.
    fn at(us: u64) -> Block {
        let mut block = Block::default();
        block.hist.record_ns(us * 1_000);
        block.ok = 1;
        block
    }

    #[test]
    fn shift_pairs_each_condition_with_the_same_rounds_up_block() {
        // Arms: 0 = direct, 1 = switchyard. The host gets slower round by round (direct
        // 100, 300, 500 µs), which unpaired medians would mistake for an effect.
        let up = vec![
            vec![at(100), at(300), at(500)],
            vec![at(200), at(400), at(600)],
        ];
        let locked = vec![
            vec![at(100), at(300), at(500)],
            vec![at(220), at(420), at(620)],
        ];
        let stopped = vec![vec![at(100)], vec![at(190)]];
        let blocks = vec![up, locked, stopped];
        let locked = shift(&blocks, Condition::DatabaseLocked, 1, 0).unwrap();
        assert_eq!(locked.rounds, 3);
        assert!((locked.median - 20.0).abs() < 1.0, "{locked:?}");
        assert!(locked.iqr.abs() < 1.0, "{locked:?}");
        let stopped = shift(&blocks, Condition::Stopped, 1, 0).unwrap();
        assert_eq!(stopped.rounds, 1, "only round 1 has a stopped block");
        assert!((stopped.median + 10.0).abs() < 1.0, "{stopped:?}");
    }

    #[test]
    fn a_round_without_answers_is_left_out_of_the_pairs() {
        let up = vec![vec![at(100), at(100)], vec![at(200), Block::default()]];
        let locked = vec![vec![at(100), at(100)], vec![at(250), at(900)]];
        let blocks = vec![up, locked, vec![Vec::new(), Vec::new()]];
        let s = shift(&blocks, Condition::DatabaseLocked, 1, 0).unwrap();
        assert_eq!(s.rounds, 1);
        assert!((s.median - 50.0).abs() < 1.0, "{s:?}");
        assert!(shift(&blocks, Condition::Stopped, 1, 0).is_none());
    }
}
