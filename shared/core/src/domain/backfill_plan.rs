//! A backfill read as several time slices at once.
//!
//! The window `(cursor, until]` is cut by `SystemModstamp` into slices, each read in keyset
//! order with its own position. Slice *i* covers `(lower_i, upper_i]`, where `lower_0` is the
//! connection's cursor and `lower_i = upper_{i-1}`. The connection's cursor only ever stands at
//! the end of the contiguous prefix of completed work: every Case at or before it is written,
//! whatever the other slices have done. The plan is stored with the connection (and versioned,
//! so a worker that lost its lease cannot overwrite a newer plan), so a crash, a lease loss or a
//! continuation resumes every slice where it was, re-reading at most one page per slice.
//!
//! Slices are balanced by splitting, not by counting: a reader that finishes its slice takes
//! the upper half of the largest unfinished one. An org whose volume grows over the window
//! (most do) is thus read evenly without a `COUNT()` per candidate range.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::cursor::Cursor;

/// One slice: `(lower, upper]`, read up to `position`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slice {
    /// Exclusive lower bound (`None`: the connection's cursor, for the first slice).
    pub lower: Option<DateTime<Utc>>,
    /// Inclusive upper bound.
    pub upper: DateTime<Utc>,
    /// The last position written in this slice (Cases up to it are written or recorded as
    /// failed).
    pub position: Cursor,
    pub done: bool,
}

impl Slice {
    /// What is left to read: the span from the position to the upper bound.
    pub fn remaining(&self) -> TimeDelta {
        self.upper - self.position.system_modstamp
    }
}

/// The slices of one backfill, in time order, with the version the store compares before each
/// commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillPlan {
    /// Bumped by every commit; the store refuses a commit whose expected version is stale.
    pub version: u64,
    /// The end of the backfill (now − lag when it was planned).
    pub until: DateTime<Utc>,
    pub slices: Vec<Slice>,
    /// The readers this backfill holds of its org's share (see `SyncConfig::slices`): other
    /// connections of the org count them while the plan is unfinished. 0 in plans stored
    /// before it was recorded (counted as one).
    #[serde(default)]
    pub readers: usize,
}

/// No slice is cut smaller than this: below it, a query costs more than it saves.
pub const MIN_SLICE: TimeDelta = TimeDelta::minutes(10);

impl BackfillPlan {
    /// `(from, until]` cut into `parts` slices of equal span (whole seconds), the first starting
    /// at `from`. Fewer slices when the window is short.
    pub fn new(from: &Cursor, until: DateTime<Utc>, parts: usize) -> Self {
        let start = from.system_modstamp;
        let span = until - start;
        let parts = parts
            .max(1)
            .min((span.num_seconds() / MIN_SLICE.num_seconds()).max(1) as usize);
        let step = span / parts as i32;
        let mut slices = Vec::with_capacity(parts);
        let mut lower: Option<DateTime<Utc>> = None;
        for i in 0..parts {
            let upper = if i + 1 == parts {
                until
            } else {
                Cursor::at(start + step * (i as i32 + 1)).system_modstamp
            };
            let position = match lower {
                None => from.clone(),
                Some(l) => Cursor::at(l),
            };
            slices.push(Slice {
                lower,
                upper,
                position,
                done: false,
            });
            lower = Some(upper);
        }
        Self {
            version: 1,
            until,
            slices,
            readers: parts,
        }
    }

    /// Where the connection's cursor may stand: the furthest Case read such that every Case
    /// at or before it is done (every earlier slice finished, this one read up to it). As a
    /// single stream's cursor, it stands on the last Case read, not on a slice's bound: a Case
    /// that becomes visible later with an older stamp is still read next time if it lies after
    /// it. `None` while no Case of the completed prefix was read.
    pub fn reached(&self) -> Option<Cursor> {
        let mut best: Option<Cursor> = None;
        for s in &self.slices {
            if s.position.case_id.is_some() && best.as_ref().is_none_or(|b| s.position > *b) {
                best = Some(s.position.clone());
            }
            if !s.done {
                break;
            }
        }
        best
    }

    pub fn is_done(&self) -> bool {
        self.slices.iter().all(|s| s.done)
    }

    /// Where one stream would stand with as much left to read as this plan: `until` less what
    /// every unfinished slice has left. Progress is shown from it, since the cursor stays in
    /// the first slice until that slice is done while the others read on.
    pub fn progress_point(&self) -> DateTime<Utc> {
        let left = self
            .slices
            .iter()
            .filter(|s| !s.done)
            .fold(TimeDelta::zero(), |left, s| {
                left + s.remaining().max(TimeDelta::zero())
            });
        self.until - left
    }

    /// Splits slice `i` at the middle of what it has left: it keeps the lower half, a new slice
    /// (returned index) takes the upper half. `None` when what is left is under two
    /// [`MIN_SLICE`]s.
    pub fn split(&mut self, i: usize) -> Option<usize> {
        let s = self.slices.get(i)?;
        if s.done || s.remaining() < MIN_SLICE * 2 {
            return None;
        }
        let mid = Cursor::at(s.position.system_modstamp + s.remaining() / 2).system_modstamp;
        let upper = s.upper;
        self.slices[i].upper = mid;
        self.slices.insert(
            i + 1,
            Slice {
                lower: Some(mid),
                upper,
                position: Cursor::at(mid),
                done: false,
            },
        );
        Some(i + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CaseId;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn slices_cover_the_window_without_gaps_or_overlaps() {
        let from = Cursor::at(t("2026-06-01T00:00:00Z"));
        let until = t("2026-12-01T00:00:07Z");
        let plan = BackfillPlan::new(&from, until, 8);
        assert_eq!(plan.slices.len(), 8);
        assert_eq!(plan.slices[0].lower, None);
        assert_eq!(plan.slices[0].position, from);
        for w in plan.slices.windows(2) {
            assert_eq!(w[1].lower, Some(w[0].upper), "contiguous");
            assert!(w[0].upper < w[1].upper);
        }
        assert_eq!(plan.slices[7].upper, until);
        assert_eq!(plan.reached(), None, "nothing read yet");
        assert_eq!(plan.progress_point(), from.system_modstamp);
    }

    #[test]
    fn progress_counts_what_every_slice_has_read() {
        let from = Cursor::at(t("2026-11-01T00:00:00Z"));
        let mut plan = BackfillPlan::new(&from, t("2026-11-05T00:00:00Z"), 4);
        let case = |ts: &str, id: &str| Cursor::new(t(ts), CaseId::parse(id).unwrap());
        // A day's slices: 6 hours read in the first, 12 in the third, the fourth done
        plan.slices[0].position = case("2026-11-01T06:00:00Z", "500xx000003DHb0");
        plan.slices[2].position = case("2026-11-03T12:00:00Z", "500xx000003DHb1");
        plan.slices[3].done = true;
        assert_eq!(plan.progress_point(), t("2026-11-02T18:00:00Z"));
        // Splitting a slice moves nothing
        let before = plan.progress_point();
        assert!(plan.split(1).is_some());
        assert_eq!(plan.progress_point(), before);
        for s in &mut plan.slices {
            s.done = true;
        }
        assert_eq!(plan.progress_point(), plan.until);
    }

    #[test]
    fn a_short_window_gets_fewer_slices() {
        let from = Cursor::at(t("2026-12-01T00:00:00Z"));
        assert_eq!(
            BackfillPlan::new(&from, t("2026-12-01T00:25:00Z"), 8)
                .slices
                .len(),
            2
        );
        assert_eq!(
            BackfillPlan::new(&from, t("2026-12-01T00:05:00Z"), 8)
                .slices
                .len(),
            1
        );
    }

    #[test]
    fn the_cursor_stands_on_the_last_case_of_the_completed_prefix() {
        let from = Cursor::at(t("2026-11-01T00:00:00Z"));
        let mut plan = BackfillPlan::new(&from, t("2026-11-05T00:00:00Z"), 4);
        let case = |ts: &str, id: &str| Cursor::new(t(ts), CaseId::parse(id).unwrap());
        let first = case("2026-11-01T09:00:00Z", "500xx000003DHb0");
        let second = case("2026-11-02T12:00:00Z", "500xx000003DHb1");
        let fourth = case("2026-11-04T01:00:00Z", "500xx000003DHb2");
        plan.slices[0].position = first.clone();
        plan.slices[1].position = second.clone();
        plan.slices[2].done = true;
        plan.slices[3].position = fourth.clone();
        assert_eq!(plan.reached(), Some(first.clone()), "slice 0 is not done");
        plan.slices[0].done = true;
        assert_eq!(plan.reached(), Some(second.clone()));
        plan.slices[1].done = true;
        // Slice 2 read nothing: the cursor stays on the last Case read, in slice 1.
        assert_eq!(
            plan.reached(),
            Some(fourth.clone()),
            "slice 3 is read up to its Case"
        );
        plan.slices[3].done = true;
        assert!(plan.is_done());
        assert_eq!(plan.reached(), Some(fourth));
    }

    #[test]
    fn a_split_hands_the_upper_half_of_what_is_left_to_a_new_slice() {
        let from = Cursor::at(t("2026-11-01T00:00:00Z"));
        let mut plan = BackfillPlan::new(&from, t("2026-11-03T00:00:00Z"), 2);
        plan.slices[0].position = Cursor::at(t("2026-11-01T12:00:00Z"));
        let new = plan.split(0).unwrap();
        assert_eq!(new, 1);
        assert_eq!(plan.slices.len(), 3);
        assert_eq!(plan.slices[0].upper, t("2026-11-01T18:00:00Z"));
        assert_eq!(plan.slices[1].lower, Some(t("2026-11-01T18:00:00Z")));
        assert_eq!(plan.slices[1].upper, t("2026-11-02T00:00:00Z"));
        assert_eq!(plan.slices[2].lower, Some(t("2026-11-02T00:00:00Z")));
        // Too little left to split.
        plan.slices[1].position = Cursor::at(t("2026-11-01T23:55:00Z"));
        assert_eq!(plan.split(1), None);
    }
}
