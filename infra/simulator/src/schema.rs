//! The objects and fields the simulator knows, with their API names, types and relationships.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SObject {
    Case,
    EmailMessage,
    Group,
    Contact,
    User,
    /// The polymorphic `Name` object behind `Case.Owner`.
    Name,
}

impl SObject {
    pub fn api_name(self) -> &'static str {
        match self {
            SObject::Case => "Case",
            SObject::EmailMessage => "EmailMessage",
            SObject::Group => "Group",
            SObject::Contact => "Contact",
            SObject::User => "User",
            SObject::Name => "Name",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            SObject::Case => "Case",
            SObject::EmailMessage => "Email Message",
            SObject::Group => "Group",
            SObject::Contact => "Contact",
            SObject::User => "User",
            SObject::Name => "Name",
        }
    }
    pub fn key_prefix(self) -> Option<&'static str> {
        match self {
            SObject::Case => Some("500"),
            SObject::EmailMessage => Some("02s"),
            SObject::Group => Some("00G"),
            SObject::Contact => Some("003"),
            SObject::User => Some("005"),
            SObject::Name => None,
        }
    }
    /// Objects that can be named in FROM (and described).
    pub fn queryable_by_name(name: &str) -> Option<SObject> {
        [
            SObject::Case,
            SObject::EmailMessage,
            SObject::Group,
            SObject::Contact,
            SObject::User,
        ]
        .into_iter()
        .find(|o| o.api_name().eq_ignore_ascii_case(name))
    }
    pub fn fields(self) -> &'static [FieldDef] {
        match self {
            SObject::Case => CASE_FIELDS,
            SObject::EmailMessage => EMAIL_FIELDS,
            SObject::Group => GROUP_FIELDS,
            SObject::Contact => CONTACT_FIELDS,
            SObject::User => USER_FIELDS,
            SObject::Name => NAME_FIELDS,
        }
    }
    pub fn field(self, name: &str) -> Option<&'static FieldDef> {
        self.fields()
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }
    pub fn relationships(self) -> &'static [RelDef] {
        match self {
            SObject::Case => CASE_RELS,
            SObject::EmailMessage => EMAIL_RELS,
            _ => &[],
        }
    }
    pub fn relationship(self, name: &str) -> Option<&'static RelDef> {
        self.relationships()
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(name))
    }
}

/// Field types as describe reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FType {
    Id,
    Reference,
    String,
    Picklist,
    Boolean,
    DateTime,
    Textarea,
    Email,
}

impl FType {
    pub fn describe_name(self) -> &'static str {
        match self {
            FType::Id => "id",
            FType::Reference => "reference",
            FType::String => "string",
            FType::Picklist => "picklist",
            FType::Boolean => "boolean",
            FType::DateTime => "datetime",
            FType::Textarea => "textarea",
            FType::Email => "email",
        }
    }
    /// The type word in "must be of type X" filter errors.
    pub fn filter_type_name(self) -> &'static str {
        match self {
            FType::Id | FType::Reference => "id",
            FType::String | FType::Picklist | FType::Email | FType::Textarea => "string",
            FType::Boolean => "boolean",
            FType::DateTime => "dateTime",
        }
    }
    pub fn is_stringish(self) -> bool {
        matches!(
            self,
            FType::String | FType::Picklist | FType::Email | FType::Textarea
        )
    }
}

/// Every field of every object, so evaluation is a `match`, not a string lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum F {
    CaseId,
    CaseNumber,
    CaseSubject,
    CaseStatus,
    CaseIsClosed,
    CaseClosedDate,
    CasePriority,
    CaseOrigin,
    CaseType,
    CaseCreatedDate,
    CaseLastModifiedDate,
    CaseSystemModstamp,
    CaseDescription,
    CaseContactId,
    CaseContactEmail,
    CaseSuppliedEmail,
    CaseOwnerId,
    CaseIsDeleted,
    EmId,
    EmParentId,
    EmMessageDate,
    EmFromAddress,
    EmFromName,
    EmToAddress,
    EmCcAddress,
    EmIncoming,
    EmSubject,
    EmStatus,
    EmTextBody,
    EmHtmlBody,
    EmHasAttachment,
    EmCreatedDate,
    EmSystemModstamp,
    GrId,
    GrName,
    GrDeveloperName,
    GrType,
    CoId,
    CoName,
    CoEmail,
    UsId,
    UsName,
    NmId,
    NmName,
    NmType,
}

#[derive(Debug)]
pub struct FieldDef {
    pub name: &'static str,
    pub f: F,
    pub ty: FType,
    pub label: &'static str,
    pub nillable: bool,
    pub length: u32,
    pub reference_to: &'static [&'static str],
    pub relationship_name: Option<&'static str>,
    pub picklist: &'static [&'static str],
}

impl FieldDef {
    pub fn filterable(&self) -> bool {
        self.ty != FType::Textarea
    }
}

const fn fd(name: &'static str, f: F, ty: FType, label: &'static str) -> FieldDef {
    FieldDef {
        name,
        f,
        ty,
        label,
        nillable: true,
        length: 0,
        reference_to: &[],
        relationship_name: None,
        picklist: &[],
    }
}

const fn not_null(mut d: FieldDef) -> FieldDef {
    d.nillable = false;
    d
}

const fn len(mut d: FieldDef, length: u32) -> FieldDef {
    d.length = length;
    d
}

const fn reference(
    mut d: FieldDef,
    to: &'static [&'static str],
    rel: Option<&'static str>,
) -> FieldDef {
    d.reference_to = to;
    d.relationship_name = rel;
    d.length = 18;
    d
}

const fn picklist(mut d: FieldDef, values: &'static [&'static str]) -> FieldDef {
    d.picklist = values;
    d.length = 255;
    d
}

pub static CASE_FIELDS: &[FieldDef] = &[
    not_null(len(fd("Id", F::CaseId, FType::Id, "Case ID"), 18)),
    not_null(len(
        fd("CaseNumber", F::CaseNumber, FType::String, "Case Number"),
        30,
    )),
    len(fd("Subject", F::CaseSubject, FType::String, "Subject"), 255),
    picklist(
        fd("Status", F::CaseStatus, FType::Picklist, "Status"),
        &["New", "Working", "Escalated", "Closed"],
    ),
    not_null(fd("IsClosed", F::CaseIsClosed, FType::Boolean, "Closed")),
    fd(
        "ClosedDate",
        F::CaseClosedDate,
        FType::DateTime,
        "Closed Date",
    ),
    picklist(
        fd("Priority", F::CasePriority, FType::Picklist, "Priority"),
        &["High", "Medium", "Low"],
    ),
    picklist(
        fd("Origin", F::CaseOrigin, FType::Picklist, "Case Origin"),
        &["Phone", "Email", "Web"],
    ),
    picklist(
        fd("Type", F::CaseType, FType::Picklist, "Case Type"),
        &[
            "Mechanical",
            "Electrical",
            "Electronic",
            "Structural",
            "Other",
            "Problem",
            "Question",
        ],
    ),
    not_null(fd(
        "CreatedDate",
        F::CaseCreatedDate,
        FType::DateTime,
        "Created Date",
    )),
    not_null(fd(
        "LastModifiedDate",
        F::CaseLastModifiedDate,
        FType::DateTime,
        "Last Modified Date",
    )),
    not_null(fd(
        "SystemModstamp",
        F::CaseSystemModstamp,
        FType::DateTime,
        "System Modstamp",
    )),
    len(
        fd(
            "Description",
            F::CaseDescription,
            FType::Textarea,
            "Description",
        ),
        32000,
    ),
    reference(
        fd(
            "ContactId",
            F::CaseContactId,
            FType::Reference,
            "Contact ID",
        ),
        &["Contact"],
        Some("Contact"),
    ),
    len(
        fd(
            "ContactEmail",
            F::CaseContactEmail,
            FType::Email,
            "Contact Email",
        ),
        80,
    ),
    len(
        fd(
            "SuppliedEmail",
            F::CaseSuppliedEmail,
            FType::Email,
            "Email Address",
        ),
        80,
    ),
    not_null(reference(
        fd("OwnerId", F::CaseOwnerId, FType::Reference, "Owner ID"),
        &["Group", "User"],
        Some("Owner"),
    )),
    not_null(fd("IsDeleted", F::CaseIsDeleted, FType::Boolean, "Deleted")),
];

pub static EMAIL_FIELDS: &[FieldDef] = &[
    not_null(len(fd("Id", F::EmId, FType::Id, "Email Message ID"), 18)),
    reference(
        fd("ParentId", F::EmParentId, FType::Reference, "Case ID"),
        &["Case"],
        Some("Parent"),
    ),
    fd(
        "MessageDate",
        F::EmMessageDate,
        FType::DateTime,
        "Message Date",
    ),
    len(
        fd(
            "FromAddress",
            F::EmFromAddress,
            FType::Email,
            "From Address",
        ),
        1000,
    ),
    len(
        fd("FromName", F::EmFromName, FType::String, "From Name"),
        1000,
    ),
    len(
        fd("ToAddress", F::EmToAddress, FType::String, "To Address"),
        4000,
    ),
    len(
        fd("CcAddress", F::EmCcAddress, FType::String, "CC Address"),
        4000,
    ),
    not_null(fd("Incoming", F::EmIncoming, FType::Boolean, "Is Incoming")),
    len(fd("Subject", F::EmSubject, FType::String, "Subject"), 3000),
    not_null(picklist(
        fd("Status", F::EmStatus, FType::Picklist, "Status"),
        &["0", "1", "2", "3", "4", "5"],
    )),
    len(
        fd("TextBody", F::EmTextBody, FType::Textarea, "Text Body"),
        131072,
    ),
    len(
        fd("HtmlBody", F::EmHtmlBody, FType::Textarea, "HTML Body"),
        131072,
    ),
    not_null(fd(
        "HasAttachment",
        F::EmHasAttachment,
        FType::Boolean,
        "Has Attachment",
    )),
    not_null(fd(
        "CreatedDate",
        F::EmCreatedDate,
        FType::DateTime,
        "Created Date",
    )),
    not_null(fd(
        "SystemModstamp",
        F::EmSystemModstamp,
        FType::DateTime,
        "System Modstamp",
    )),
];

pub static GROUP_FIELDS: &[FieldDef] = &[
    not_null(len(fd("Id", F::GrId, FType::Id, "Group ID"), 18)),
    not_null(len(fd("Name", F::GrName, FType::String, "Name"), 40)),
    len(
        fd(
            "DeveloperName",
            F::GrDeveloperName,
            FType::String,
            "Developer Name",
        ),
        80,
    ),
    not_null(picklist(
        fd("Type", F::GrType, FType::Picklist, "Type"),
        &[
            "Regular",
            "Role",
            "RoleAndSubordinates",
            "Queue",
            "Organization",
            "Manager",
        ],
    )),
];

pub static CONTACT_FIELDS: &[FieldDef] = &[
    not_null(len(fd("Id", F::CoId, FType::Id, "Contact ID"), 18)),
    not_null(len(fd("Name", F::CoName, FType::String, "Full Name"), 121)),
    len(fd("Email", F::CoEmail, FType::Email, "Email"), 80),
];

pub static USER_FIELDS: &[FieldDef] = &[
    not_null(len(fd("Id", F::UsId, FType::Id, "User ID"), 18)),
    not_null(len(fd("Name", F::UsName, FType::String, "Full Name"), 121)),
];

pub static NAME_FIELDS: &[FieldDef] = &[
    not_null(len(fd("Id", F::NmId, FType::Id, "ID"), 18)),
    len(fd("Name", F::NmName, FType::String, "Name"), 255),
    picklist(
        fd("Type", F::NmType, FType::Picklist, "Type"),
        &["Queue", "User"],
    ),
];

/// A child-to-parent relationship (`Contact.Name`, `Owner.Type`, `Parent.CaseNumber`).
#[derive(Debug)]
pub struct RelDef {
    pub name: &'static str,
    pub id_field: F,
    pub target: SObject,
}

pub static CASE_RELS: &[RelDef] = &[
    RelDef {
        name: "Contact",
        id_field: F::CaseContactId,
        target: SObject::Contact,
    },
    RelDef {
        name: "Owner",
        id_field: F::CaseOwnerId,
        target: SObject::Name,
    },
];

pub static EMAIL_RELS: &[RelDef] = &[RelDef {
    name: "Parent",
    id_field: F::EmParentId,
    target: SObject::Case,
}];

/// The only parent-to-child relationship: `Case.EmailMessages`.
pub const CHILD_EMAIL_MESSAGES: &str = "EmailMessages";
