//! Domain types. Each can only be built by parsing, so an invalid value cannot exist past the
//! edge where input arrives.

pub mod backfill_plan;
pub mod connection;
pub mod cursor;
pub mod ids;
pub mod settings;
pub mod sync_report;
pub mod urls;

pub use backfill_plan::{BackfillPlan, Slice};
pub use connection::{
    CaseFailure, ChannelName, Connection, ConnectionId, ConnectionState, MAX_RECORDED_FAILURES,
};
pub use cursor::Cursor;
pub use ids::{CaseId, IdError, OrgId, QueueId};
pub use settings::{ApiVersion, BackfillWindow, QueueScope, QueueScopeError};
pub use sync_report::{SyncCounts, SyncOutcome, SyncReport};
pub use urls::{InstanceUrl, LoginUrl, UrlError};
