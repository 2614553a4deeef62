//! The org's data: Cases, EmailMessages, queues (Groups), users and contacts, with the mutation
//! helpers tests use to stage exactly the situation they need.

use std::ops::RangeInclusive;
use std::sync::Arc;

use chrono::{DateTime, Duration, DurationRound, TimeZone, Utc};

use serde_json::{Value, json};

use crate::cdc::ChangeRecord;
use crate::ids::{IdGen, IdKey, SfId, key_of, prefix};
use crate::schema::SObject;
use crate::text::{self, Rng64};

/// A long text value: either stored, or generated on demand from a seed (benchmark orgs).
#[derive(Clone, Debug)]
pub enum BodyText {
    Stored(Arc<str>),
    Generated { seed: u64, len: u32, html: bool },
}

impl BodyText {
    pub fn as_str(&self) -> &str {
        match self {
            BodyText::Stored(s) => s,
            BodyText::Generated { seed, len, html } => text::pooled_body(*seed, *len, *html),
        }
    }
}

impl From<String> for BodyText {
    fn from(s: String) -> Self {
        BodyText::Stored(s.into())
    }
}

impl From<&str> for BodyText {
    fn from(s: &str) -> Self {
        BodyText::Stored(s.into())
    }
}

#[derive(Clone, Debug)]
pub struct CaseRecord {
    pub id: SfId,
    pub case_number: String,
    pub subject: Option<String>,
    /// `IsClosed` is derived: `Status = 'Closed'`.
    pub status: String,
    pub closed_date: Option<DateTime<Utc>>,
    pub priority: Option<String>,
    pub origin: Option<String>,
    pub case_type: Option<String>,
    pub created_date: DateTime<Utc>,
    pub last_modified_date: DateTime<Utc>,
    pub system_modstamp: DateTime<Utc>,
    pub description: Option<BodyText>,
    pub contact_id: Option<SfId>,
    pub supplied_email: Option<String>,
    pub owner_id: SfId,
    /// Only `queryAll` returns deleted Cases.
    pub is_deleted: bool,
    /// "Late visibility": hidden from every query until this wall-clock instant.
    pub visible_from: Option<DateTime<Utc>>,
}

impl CaseRecord {
    pub fn is_closed(&self) -> bool {
        self.status == "Closed"
    }
}

#[derive(Clone, Debug)]
pub struct EmailRecord {
    pub id: SfId,
    pub parent_id: SfId,
    pub message_date: Option<DateTime<Utc>>,
    pub from_address: Option<Arc<str>>,
    pub from_name: Option<Arc<str>>,
    pub to_address: Option<Arc<str>>,
    pub cc_address: Option<Arc<str>>,
    pub incoming: bool,
    pub subject: Option<Arc<str>>,
    /// Picklist `"0"`..`"5"`: New, Read, Replied, Sent, Forwarded, Draft.
    pub status: Arc<str>,
    pub text_body: Option<BodyText>,
    pub html_body: Option<BodyText>,
    pub has_attachment: bool,
    pub created_date: DateTime<Utc>,
    pub system_modstamp: DateTime<Utc>,
}

/// A Group (queues are Groups whose `Type` is `Queue`).
#[derive(Clone, Debug)]
pub struct QueueRecord {
    pub id: SfId,
    pub name: String,
    pub developer_name: String,
    pub group_type: String,
}

#[derive(Clone, Debug)]
pub struct UserRecord {
    pub id: SfId,
    pub name: String,
}

#[derive(Clone, Debug)]
pub struct ContactRecord {
    pub id: SfId,
    pub name: String,
    pub email: Option<String>,
}

/// Input of [`Org::add_case`]. Timestamps default to the wall clock (whole seconds, as
/// Salesforce's audit fields); `closed_date` defaults to `system_modstamp` for closed Cases;
/// `owner_id` defaults to the first queue (or the API user when there is no queue).
#[derive(Clone, Debug)]
pub struct NewCase {
    pub subject: Option<String>,
    pub status: String,
    pub priority: Option<String>,
    pub origin: Option<String>,
    pub case_type: Option<String>,
    pub created_date: Option<DateTime<Utc>>,
    pub last_modified_date: Option<DateTime<Utc>>,
    pub system_modstamp: Option<DateTime<Utc>>,
    pub closed_date: Option<DateTime<Utc>>,
    pub description: Option<String>,
    pub contact_id: Option<String>,
    pub supplied_email: Option<String>,
    pub owner_id: Option<String>,
    pub is_deleted: bool,
    pub visible_from: Option<DateTime<Utc>>,
}

impl Default for NewCase {
    fn default() -> Self {
        NewCase {
            subject: Some("Test case".into()),
            status: "Closed".into(),
            priority: Some("Medium".into()),
            origin: Some("Email".into()),
            case_type: None,
            created_date: None,
            last_modified_date: None,
            system_modstamp: None,
            closed_date: None,
            description: None,
            contact_id: None,
            supplied_email: None,
            owner_id: None,
            is_deleted: false,
            visible_from: None,
        }
    }
}

/// Input of [`Org::add_email`]. `message_date`/`created_date`/`system_modstamp` default to the
/// wall clock; `status` defaults to `"1"` (Read) for incoming mail and `"3"` (Sent) otherwise.
#[derive(Clone, Debug, Default)]
pub struct NewEmail {
    pub message_date: Option<DateTime<Utc>>,
    pub from_address: Option<String>,
    pub from_name: Option<String>,
    pub to_address: Option<String>,
    pub cc_address: Option<String>,
    pub incoming: bool,
    pub subject: Option<String>,
    pub status: Option<String>,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
    pub has_attachment: bool,
    pub created_date: Option<DateTime<Utc>>,
    pub system_modstamp: Option<DateTime<Utc>>,
}

/// Org-level permissions of the API user.
#[derive(Clone, Debug)]
pub struct Permissions {
    pub case_accessible: bool,
    pub email_message_accessible: bool,
    /// Field-level security: fields hidden from the API user (`(object, field API name)`).
    pub hidden_fields: Vec<(SObject, String)>,
}

impl Default for Permissions {
    fn default() -> Self {
        Permissions {
            case_accessible: true,
            email_message_accessible: true,
            hidden_fields: Vec::new(),
        }
    }
}

/// Parameters of [`Org::generated`] (the benchmark's org).
#[derive(Clone, Debug)]
pub struct OrgSpec {
    pub cases: usize,
    pub seed: u64,
    pub emails_per_case: RangeInclusive<u32>,
    pub body_bytes: RangeInclusive<u32>,
    /// Share of emails with `TextBody` null and only an `HtmlBody`.
    pub html_only_share: f64,
    /// Share of Cases sharing their SystemModstamp with the previous one.
    pub tie_share: f64,
    /// SystemModstamps are spread over `start..end`.
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Queue names; Cases are spread over them.
    pub queues: Vec<String>,
    /// Share of Cases that are open (default 0: all closed).
    pub open_share: f64,
    /// Share of Cases owned by a user instead of a queue (default 0).
    pub user_owned_share: f64,
}

impl Default for OrgSpec {
    fn default() -> Self {
        let end = Utc::now()
            .duration_trunc(Duration::seconds(1))
            .unwrap_or_else(|_| Utc::now());
        OrgSpec {
            cases: 1000,
            seed: 1,
            emails_per_case: 0..=10,
            body_bytes: 500..=8000,
            html_only_share: 0.2,
            tie_share: 0.05,
            start: end - Duration::days(180),
            end,
            queues: vec![
                "Tier 1 Support".into(),
                "Billing".into(),
                "Escalations".into(),
            ],
            open_share: 0.0,
            user_owned_share: 0.0,
        }
    }
}

/// Who owns a Case: resolved from `OwnerId`.
#[derive(Clone, Copy, Debug)]
pub enum Owner<'a> {
    Queue(&'a QueueRecord),
    User(&'a UserRecord),
}

impl<'a> Owner<'a> {
    pub fn id(self) -> &'a SfId {
        match self {
            Owner::Queue(q) => &q.id,
            Owner::User(u) => &u.id,
        }
    }
    pub fn name(self) -> &'a str {
        match self {
            Owner::Queue(q) => &q.name,
            Owner::User(u) => &u.name,
        }
    }
    /// `Owner.Type`: `Queue` or `User`.
    pub fn type_name(self) -> &'static str {
        match self {
            Owner::Queue(_) => "Queue",
            Owner::User(_) => "User",
        }
    }
    /// The sObject the owner id points to (for `attributes.url`).
    pub fn sobject(self) -> &'static str {
        match self {
            Owner::Queue(_) => "Group",
            Owner::User(_) => "User",
        }
    }
}

/// The simulated org. Records are only ever appended (deletion is `IsDeleted`), so indices stay
/// valid for open query cursors.
#[derive(Clone, Debug)]
pub struct Org {
    pub org_id: SfId,
    /// The user every token is issued for.
    pub api_user_id: SfId,
    pub permissions: Permissions,
    ids: IdGen,
    id_rng: Rng64,
    next_case_number: u64,
    cases: Vec<CaseRecord>,
    case_emails: Vec<Vec<u32>>,
    emails: Vec<EmailRecord>,
    groups: Vec<QueueRecord>,
    users: Vec<UserRecord>,
    contacts: Vec<ContactRecord>,
    /// The change events of the changes made since [`Org::record_changes`] (`None`: not
    /// recording).
    changes: Option<Vec<ChangeRecord>>,
    commit_number: u64,
}

/// A datetime as Salesforce's JSON writes it.
fn iso(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn now_secs() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(Duration::seconds(1)).unwrap_or(now)
}

fn find<T>(items: &[T], key: &IdKey, id_of: impl Fn(&T) -> &SfId) -> Option<usize> {
    // Ids of one prefix are generated in increasing order and records are only appended.
    items.binary_search_by(|x| id_of(x).key().cmp(key)).ok()
}

impl Default for Org {
    fn default() -> Self {
        Org::new()
    }
}

impl Org {
    /// An empty org with one API user ("Integration User") and no queues.
    pub fn new() -> Org {
        Org::with_seed(0)
    }

    fn with_seed(seed: u64) -> Org {
        let mut ids = IdGen::new(*b"Dn");
        let org_id = ids.next(prefix::ORGANIZATION);
        let api_user_id = ids.next(prefix::USER);
        Org {
            org_id,
            api_user_id,
            permissions: Permissions::default(),
            ids,
            id_rng: Rng64::new(seed ^ 0x1D5),
            next_case_number: 1001,
            cases: Vec::new(),
            case_emails: Vec::new(),
            emails: Vec::new(),
            groups: Vec::new(),
            users: vec![UserRecord {
                id: api_user_id,
                name: "Integration User".into(),
            }],
            contacts: Vec::new(),
            changes: None,
            commit_number: 11_000_000_000,
        }
    }

    // ----- change events -------------------------------------------------------------------

    /// Starts (or stops) recording a change event for every change made from now on, as
    /// Change Data Capture would publish it.
    pub fn record_changes(&mut self, on: bool) {
        self.changes = on.then(Vec::new);
    }

    /// The change events recorded since the last call, oldest first.
    pub fn take_changes(&mut self) -> Vec<ChangeRecord> {
        self.changes
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    fn log_change(
        &mut self,
        entity: &'static str,
        change_type: &str,
        record_id: SfId,
        fields: &[(&str, Value)],
    ) {
        if self.changes.is_none() {
            return;
        }
        self.commit_number += 1;
        let key = self.id_rng.range(0, 1 << 62);
        let record = ChangeRecord {
            entity,
            change_type: change_type.to_owned(),
            record_ids: vec![record_id.to_string()],
            changed_fields: fields.iter().map(|(k, _)| (*k).to_owned()).collect(),
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            commit_timestamp: Utc::now().timestamp_millis(),
            transaction_key: format!(
                "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                key >> 32,
                (key >> 16) & 0xffff,
                key & 0xffff,
                self.commit_number & 0xffff,
                self.commit_number
            ),
            sequence_number: 1,
            commit_number: self.commit_number,
            commit_user: self.api_user_id.to_string(),
        };
        if let Some(log) = &mut self.changes {
            log.push(record);
        }
    }

    fn log_case_update(&mut self, idx: usize, changed: &[&str]) {
        let c = &self.cases[idx];
        let fields: Vec<(&str, Value)> = changed
            .iter()
            .map(|f| {
                let v = match *f {
                    "Status" => json!(c.status),
                    "ClosedDate" => json!(c.closed_date.map(iso)),
                    "OwnerId" => json!(c.owner_id.to_string()),
                    "LastModifiedDate" => json!(iso(c.last_modified_date)),
                    _ => Value::Null,
                };
                (*f, v)
            })
            .collect();
        let id = c.id;
        self.log_change("Case", "UPDATE", id, &fields);
    }

    fn next_id(&mut self, prefix: &str) -> SfId {
        // Realistic gaps between consecutive ids, still monotonic.
        let step = self.id_rng.range(1, 40);
        self.ids.next_with_step(prefix, step)
    }

    // ----- reading -------------------------------------------------------------------------

    pub fn cases(&self) -> &[CaseRecord] {
        &self.cases
    }
    pub fn emails(&self) -> &[EmailRecord] {
        &self.emails
    }
    pub fn groups(&self) -> &[QueueRecord] {
        &self.groups
    }
    pub fn queues(&self) -> impl Iterator<Item = &QueueRecord> {
        self.groups.iter().filter(|g| g.group_type == "Queue")
    }
    pub fn users(&self) -> &[UserRecord] {
        &self.users
    }
    pub fn contacts(&self) -> &[ContactRecord] {
        &self.contacts
    }

    pub(crate) fn case_index(&self, id: &str) -> Option<usize> {
        let key = key_of(id)?;
        find(&self.cases, &key, |c| &c.id)
    }
    pub fn case(&self, id: &str) -> Option<&CaseRecord> {
        self.case_index(id).map(|i| &self.cases[i])
    }
    pub fn email(&self, id: &str) -> Option<&EmailRecord> {
        let key = key_of(id)?;
        find(&self.emails, &key, |e| &e.id).map(|i| &self.emails[i])
    }
    /// The emails of a Case in insertion order.
    pub fn emails_of(&self, case_id: &str) -> Vec<&EmailRecord> {
        match self.case_index(case_id) {
            Some(i) => self.case_emails[i]
                .iter()
                .map(|&e| &self.emails[e as usize])
                .collect(),
            None => Vec::new(),
        }
    }
    pub(crate) fn email_indices_of_case(&self, case_idx: usize) -> &[u32] {
        &self.case_emails[case_idx]
    }
    pub fn contact_by_id(&self, id: &SfId) -> Option<&ContactRecord> {
        find(&self.contacts, &id.key(), |c| &c.id).map(|i| &self.contacts[i])
    }
    pub fn group_by_id(&self, id: &SfId) -> Option<&QueueRecord> {
        find(&self.groups, &id.key(), |g| &g.id).map(|i| &self.groups[i])
    }
    pub fn user_by_id(&self, id: &SfId) -> Option<&UserRecord> {
        find(&self.users, &id.key(), |u| &u.id).map(|i| &self.users[i])
    }
    pub fn case_by_id(&self, id: &SfId) -> Option<&CaseRecord> {
        find(&self.cases, &id.key(), |c| &c.id).map(|i| &self.cases[i])
    }
    pub fn owner_of(&self, case: &CaseRecord) -> Option<Owner<'_>> {
        if case.owner_id.prefix() == prefix::GROUP {
            self.group_by_id(&case.owner_id).map(Owner::Queue)
        } else {
            self.user_by_id(&case.owner_id).map(Owner::User)
        }
    }
    pub fn contact_of(&self, case: &CaseRecord) -> Option<&ContactRecord> {
        case.contact_id.as_ref().and_then(|c| self.contact_by_id(c))
    }

    /// Whether a query (not queryAll) run at `now` sees this Case.
    pub(crate) fn case_visible(case: &CaseRecord, now: DateTime<Utc>, all_rows: bool) -> bool {
        (all_rows || !case.is_deleted) && case.visible_from.is_none_or(|v| v <= now)
    }

    // ----- creating ------------------------------------------------------------------------

    pub fn add_group(&mut self, name: &str, developer_name: &str, group_type: &str) -> String {
        let id = self.next_id(prefix::GROUP);
        self.groups.push(QueueRecord {
            id,
            name: name.into(),
            developer_name: developer_name.into(),
            group_type: group_type.into(),
        });
        id.to_string()
    }
    /// A queue: a Group whose `Type` is `Queue`.
    pub fn add_queue(&mut self, name: &str, developer_name: &str) -> String {
        self.add_group(name, developer_name, "Queue")
    }
    pub fn add_user(&mut self, name: &str) -> String {
        let id = self.next_id(prefix::USER);
        self.users.push(UserRecord {
            id,
            name: name.into(),
        });
        id.to_string()
    }
    pub fn add_contact(&mut self, name: &str, email: &str) -> String {
        let id = self.next_id(prefix::CONTACT);
        self.contacts.push(ContactRecord {
            id,
            name: name.into(),
            email: if email.is_empty() {
                None
            } else {
                Some(email.into())
            },
        });
        id.to_string()
    }

    fn resolve_owner(&self, owner: Option<&str>) -> SfId {
        match owner {
            Some(o) => {
                let id = SfId::parse(o).unwrap_or_else(|| panic!("owner id {o:?} is not an id"));
                assert!(
                    self.group_by_id(&id).is_some() || self.user_by_id(&id).is_some(),
                    "owner {o} is neither a group nor a user of this org"
                );
                id
            }
            None => self
                .queues()
                .next()
                .map(|q| q.id)
                .unwrap_or(self.api_user_id),
        }
    }

    /// Adds a Case; returns its 18-character id. Panics on an owner/contact id that is not in
    /// this org (a bug in the test that stages the data).
    pub fn add_case(&mut self, new: NewCase) -> String {
        let now = now_secs();
        let owner_id = self.resolve_owner(new.owner_id.as_deref());
        let contact_id = new.contact_id.as_deref().map(|c| {
            let id = SfId::parse(c).unwrap_or_else(|| panic!("contact id {c:?} is not an id"));
            assert!(
                self.contact_by_id(&id).is_some(),
                "contact {c} is not in this org"
            );
            id
        });
        let modstamp = new.system_modstamp.unwrap_or(now);
        let created = new.created_date.unwrap_or(modstamp.min(now));
        let closed = new.status == "Closed";
        let id = self.next_id(prefix::CASE);
        let number = self.next_case_number;
        self.next_case_number += 1;
        self.cases.push(CaseRecord {
            id,
            case_number: format!("{number:08}"),
            subject: new.subject,
            closed_date: new
                .closed_date
                .or(if closed { Some(modstamp) } else { None }),
            status: new.status,
            priority: new.priority,
            origin: new.origin,
            case_type: new.case_type,
            created_date: created,
            last_modified_date: new.last_modified_date.unwrap_or(modstamp),
            system_modstamp: modstamp,
            description: new.description.map(BodyText::from),
            contact_id,
            supplied_email: new.supplied_email,
            owner_id,
            is_deleted: new.is_deleted,
            visible_from: new.visible_from,
        });
        self.case_emails.push(Vec::new());
        let c = &self.cases[self.cases.len() - 1];
        let fields = [
            ("CaseNumber", json!(c.case_number)),
            ("Subject", json!(c.subject)),
            ("Status", json!(c.status)),
            ("Priority", json!(c.priority)),
            ("OwnerId", json!(c.owner_id.to_string())),
            ("ClosedDate", json!(c.closed_date.map(iso))),
            ("CreatedDate", json!(iso(c.created_date))),
            ("LastModifiedDate", json!(iso(c.last_modified_date))),
        ];
        self.log_change("Case", "CREATE", id, &fields);
        id.to_string()
    }

    /// Adds an EmailMessage to a Case; with `bump_case_modstamp` the Case's SystemModstamp and
    /// LastModifiedDate become the email's SystemModstamp. Panics if the Case does not exist.
    pub fn add_email(&mut self, case_id: &str, new: NewEmail, bump_case_modstamp: bool) -> String {
        let idx = self
            .case_index(case_id)
            .unwrap_or_else(|| panic!("add_email: no Case {case_id}"));
        let now = now_secs();
        let message_date = new.message_date.or(Some(now));
        let created = new.created_date.or(message_date).unwrap_or(now);
        let modstamp = new.system_modstamp.unwrap_or(created);
        let id = self.next_id(prefix::EMAIL_MESSAGE);
        let status = new
            .status
            .unwrap_or_else(|| if new.incoming { "1" } else { "3" }.into());
        self.emails.push(EmailRecord {
            id,
            parent_id: self.cases[idx].id,
            message_date,
            from_address: new.from_address.map(Arc::from),
            from_name: new.from_name.map(Arc::from),
            to_address: new.to_address.map(Arc::from),
            cc_address: new.cc_address.map(Arc::from),
            incoming: new.incoming,
            subject: new.subject.map(Arc::from),
            status: status.into(),
            text_body: new.text_body.map(BodyText::from),
            html_body: new.html_body.map(BodyText::from),
            has_attachment: new.has_attachment,
            created_date: created,
            system_modstamp: modstamp,
        });
        let email_idx = u32::try_from(self.emails.len() - 1).expect("fewer than 4 billion emails");
        self.case_emails[idx].push(email_idx);
        let email = &self.emails[self.emails.len() - 1];
        let fields = [
            ("ParentId", json!(email.parent_id.to_string())),
            ("Incoming", json!(email.incoming)),
            ("Subject", json!(email.subject.as_deref())),
            ("MessageDate", json!(email.message_date.map(iso))),
        ];
        self.log_change("EmailMessage", "CREATE", id, &fields);
        if bump_case_modstamp {
            let c = &mut self.cases[idx];
            c.system_modstamp = modstamp;
            c.last_modified_date = modstamp;
            self.log_case_update(idx, &["LastModifiedDate"]);
        }
        id.to_string()
    }

    // ----- changing ------------------------------------------------------------------------

    /// Applies `f` to the Case; the caller decides what happens to its SystemModstamp. Records
    /// no change event (a test's edit is followed by [`Org::touch`], which does). Returns
    /// `None` when there is no such Case.
    pub fn update_case<R>(&mut self, id: &str, f: impl FnOnce(&mut CaseRecord) -> R) -> Option<R> {
        let idx = self.case_index(id)?;
        Some(f(&mut self.cases[idx]))
    }

    /// Applies `f`, then records an update of `changed`.
    fn change_case(&mut self, id: &str, changed: &[&str], f: impl FnOnce(&mut CaseRecord)) -> bool {
        let Some(idx) = self.case_index(id) else {
            return false;
        };
        f(&mut self.cases[idx]);
        self.log_case_update(idx, changed);
        true
    }

    /// Sets SystemModstamp and LastModifiedDate (as any edit does).
    pub fn touch(&mut self, id: &str, at: DateTime<Utc>) -> bool {
        self.change_case(id, &["LastModifiedDate"], |c| {
            c.system_modstamp = at;
            c.last_modified_date = at;
        })
    }

    /// Hides the Case from every query until `at` (wall clock), whatever its SystemModstamp.
    pub fn set_visible_from(&mut self, id: &str, at: DateTime<Utc>) -> bool {
        self.update_case(id, |c| c.visible_from = Some(at))
            .is_some()
    }

    /// Closes the Case at `at` (Status, ClosedDate, SystemModstamp).
    pub fn close_case(&mut self, id: &str, at: DateTime<Utc>) -> bool {
        self.change_case(id, &["Status", "ClosedDate", "LastModifiedDate"], |c| {
            c.status = "Closed".into();
            c.closed_date = Some(at);
            c.system_modstamp = at;
            c.last_modified_date = at;
        })
    }

    /// Reopens the Case at `at` (Status `Working`, ClosedDate null, SystemModstamp).
    pub fn reopen_case(&mut self, id: &str, at: DateTime<Utc>) -> bool {
        self.change_case(id, &["Status", "ClosedDate", "LastModifiedDate"], |c| {
            c.status = "Working".into();
            c.closed_date = None;
            c.system_modstamp = at;
            c.last_modified_date = at;
        })
    }

    /// Moves the Case to another owner (queue or user) at `at`.
    pub fn set_owner(&mut self, id: &str, owner_id: &str, at: DateTime<Utc>) -> bool {
        let owner = self.resolve_owner(Some(owner_id));
        self.change_case(id, &["OwnerId", "LastModifiedDate"], |c| {
            c.owner_id = owner;
            c.system_modstamp = at;
            c.last_modified_date = at;
        })
    }

    /// Soft-deletes the Case (only `queryAll` sees it afterwards).
    pub fn delete_case(&mut self, id: &str, at: DateTime<Utc>) -> bool {
        let Some(idx) = self.case_index(id) else {
            return false;
        };
        let c = &mut self.cases[idx];
        c.is_deleted = true;
        c.system_modstamp = at;
        let id = c.id;
        self.log_change("Case", "DELETE", id, &[]);
        true
    }

    /// Makes an object (in)accessible to the API user.
    pub fn set_object_accessible(&mut self, object: SObject, accessible: bool) {
        match object {
            SObject::Case => self.permissions.case_accessible = accessible,
            SObject::EmailMessage => self.permissions.email_message_accessible = accessible,
            _ => {}
        }
    }

    pub fn is_object_accessible(&self, object: SObject) -> bool {
        match object {
            SObject::Case => self.permissions.case_accessible,
            SObject::EmailMessage => self.permissions.email_message_accessible,
            _ => true,
        }
    }

    /// Field-level security: hides a field from the API user (queries naming it get
    /// INVALID_FIELD, describe omits it).
    pub fn hide_field(&mut self, object: SObject, field: &str) {
        self.permissions
            .hidden_fields
            .push((object, field.to_string()));
    }

    pub fn is_field_hidden(&self, object: SObject, field: &str) -> bool {
        self.permissions
            .hidden_fields
            .iter()
            .any(|(o, f)| *o == object && f.eq_ignore_ascii_case(field))
    }

    // ----- ready-made orgs -----------------------------------------------------------------

    /// The demo org: three queues, ~150 Cases over the 60 days before `now`, realistic threads.
    pub fn sample(seed: u64, now: DateTime<Utc>) -> Org {
        crate::sample::build_sample(seed, now)
    }

    /// A large org for the benchmark; email bodies are generated on demand, not stored.
    pub fn generated(spec: OrgSpec) -> Org {
        let mut org = Org::with_seed(spec.seed);
        let mut rng = Rng64::new(spec.seed);
        let queue_ids: Vec<SfId> = spec
            .queues
            .iter()
            .map(|q| {
                let dev: String = q
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                let id = org.add_queue(q, &dev);
                SfId::parse(&id).expect("generated ids parse")
            })
            .collect();
        let agents: Vec<SfId> = ["Maria Agent", "Sam Agent", "Ola Agent"]
            .iter()
            .map(|n| SfId::parse(&org.add_user(n)).expect("generated ids parse"))
            .collect();
        let n_contacts = (spec.cases / 20).clamp(1, 5000);
        let mut contact_info: Vec<(SfId, Arc<str>, Arc<str>)> = Vec::with_capacity(n_contacts);
        for i in 0..n_contacts {
            let first = *rng.pick(text::FIRST_NAMES);
            let last = *rng.pick(text::LAST_NAMES);
            let domain = *rng.pick(text::COMPANIES);
            let name = format!("{first} {last}");
            let email = format!(
                "{}.{}{}@{}",
                ascii_lower(first),
                ascii_lower(last),
                i,
                domain
            );
            let id = org.next_id(prefix::CONTACT);
            org.contacts.push(ContactRecord {
                id,
                name: name.clone(),
                email: Some(email.clone()),
            });
            contact_info.push((id, name.into(), email.into()));
        }
        let support_addr: Arc<str> = Arc::from("support@acme.example");
        let support_name: Arc<str> = Arc::from("Acme Support");
        let status_read: Arc<str> = Arc::from("1");
        let status_sent: Arc<str> = Arc::from("3");
        let subjects: Vec<(Arc<str>, Arc<str>)> = text::TOPICS
            .iter()
            .map(|t| {
                (
                    Arc::from(t.subject),
                    Arc::from(format!("RE: {}", t.subject)),
                )
            })
            .collect();

        let span_ms = (spec.end - spec.start).num_milliseconds().max(1) as u64;
        let span_s = (span_ms / 1000).max(1);
        org.cases.reserve(spec.cases);
        org.case_emails.reserve(spec.cases);
        let mut prev_modstamp: Option<DateTime<Utc>> = None;
        for ci in 0..spec.cases {
            let modstamp = match prev_modstamp {
                Some(p) if rng.chance(spec.tie_share) => p,
                _ => spec.start + Duration::seconds(rng.range(0, span_s - 1) as i64),
            };
            prev_modstamp = Some(modstamp);
            let created = modstamp - Duration::seconds(rng.range(600, 14 * 86_400) as i64);
            let topic_idx = (rng.next_u64() % text::TOPICS.len() as u64) as usize;
            let topic = &text::TOPICS[topic_idx];
            let (cid, cname, cemail) =
                contact_info[(rng.next_u64() % n_contacts as u64) as usize].clone();
            let open = rng.chance(spec.open_share);
            let owner = if rng.chance(spec.user_owned_share) || queue_ids.is_empty() {
                *rng.pick(&agents)
            } else {
                queue_ids[(topic.queue + ci) % queue_ids.len()]
            };
            let id = org.next_id(prefix::CASE);
            let number = org.next_case_number;
            org.next_case_number += 1;
            let description = if rng.chance(0.7) {
                Some(BodyText::Generated {
                    seed: text::mix(&[spec.seed, ci as u64, u64::MAX]),
                    len: rng.range(100, 600) as u32,
                    html: false,
                })
            } else {
                None
            };
            org.cases.push(CaseRecord {
                id,
                case_number: format!("{number:08}"),
                subject: Some(topic.subject.to_string()),
                status: if open { "Working" } else { "Closed" }.into(),
                closed_date: if open { None } else { Some(modstamp) },
                priority: Some(["Low", "Medium", "High"][ci % 3].into()),
                origin: Some(if ci % 4 == 0 { "Web" } else { "Email" }.into()),
                case_type: topic.case_type.map(String::from),
                created_date: created,
                last_modified_date: modstamp,
                system_modstamp: modstamp,
                description,
                contact_id: Some(cid),
                supplied_email: Some(cemail.to_string()),
                owner_id: owner,
                is_deleted: false,
                visible_from: None,
            });
            let n_emails = rng.range(
                u64::from(*spec.emails_per_case.start()),
                u64::from(*spec.emails_per_case.end()),
            );
            let mut list = Vec::with_capacity(n_emails as usize);
            let step = ((modstamp - created).num_seconds().max(2) as u64) / (n_emails + 1);
            for ei in 0..n_emails {
                let incoming = ei % 2 == 0;
                let at = created + Duration::seconds((step * (ei + 1)) as i64);
                let html_only = rng.chance(spec.html_only_share);
                let body_len = rng.range(
                    u64::from(*spec.body_bytes.start()),
                    u64::from(*spec.body_bytes.end()),
                ) as u32;
                let seed = text::mix(&[spec.seed, ci as u64, ei]);
                let eid = org.next_id(prefix::EMAIL_MESSAGE);
                let (subj, re_subj) = &subjects[topic_idx];
                org.emails.push(EmailRecord {
                    id: eid,
                    parent_id: id,
                    message_date: Some(at),
                    from_address: Some(if incoming {
                        cemail.clone()
                    } else {
                        support_addr.clone()
                    }),
                    from_name: Some(if incoming {
                        cname.clone()
                    } else {
                        support_name.clone()
                    }),
                    to_address: Some(if incoming {
                        support_addr.clone()
                    } else {
                        cemail.clone()
                    }),
                    cc_address: None,
                    incoming,
                    subject: Some(if ei == 0 {
                        subj.clone()
                    } else {
                        re_subj.clone()
                    }),
                    status: if incoming {
                        status_read.clone()
                    } else {
                        status_sent.clone()
                    },
                    text_body: if html_only {
                        None
                    } else {
                        Some(BodyText::Generated {
                            seed,
                            len: body_len,
                            html: false,
                        })
                    },
                    html_body: if html_only || rng.chance(0.5) {
                        Some(BodyText::Generated {
                            seed,
                            len: body_len,
                            html: true,
                        })
                    } else {
                        None
                    },
                    has_attachment: rng.chance(0.1),
                    created_date: at,
                    system_modstamp: at,
                });
                list.push(
                    u32::try_from(org.emails.len() - 1).expect("fewer than 4 billion emails"),
                );
            }
            org.case_emails.push(list);
        }
        org
    }
}

fn ascii_lower(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphabetic())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Convenience: a UTC instant from its parts (panics on an invalid date: test data only).
pub fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
        .single()
        .expect("valid date")
}
