//! Serialising query results straight from the org's records (no intermediate JSON values).

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use crate::org::Org;
use crate::schema::{CHILD_EMAIL_MESSAGES, FieldDef, SObject};
use crate::soql::eval::{OutItem, Plan, Row, Val, get, parent, row_of};

/// `2024-01-01T00:00:00.000+0000`, like Salesforce.
pub fn format_datetime(d: &DateTime<Utc>) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}+0000",
        d.year(),
        d.month(),
        d.day(),
        d.hour(),
        d.minute(),
        d.second(),
        d.timestamp_subsec_millis()
    )
}

struct V<'a>(Val<'a>);

impl Serialize for V<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Val::Null => s.serialize_unit(),
            Val::Str(x) => s.serialize_str(x),
            Val::Bool(b) => s.serialize_bool(b),
            Val::Dt(d) => s.serialize_str(&format_datetime(&d)),
            Val::Id(id) => s.serialize_str(id.as_str()),
        }
    }
}

struct Attributes<'a> {
    ty: &'static str,
    url: String,
    _p: std::marker::PhantomData<&'a ()>,
}

impl Serialize for Attributes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("type", self.ty)?;
        m.serialize_entry("url", &self.url)?;
        m.end()
    }
}

fn attributes<'a>(version: &str, row: &Row<'a>) -> Attributes<'a> {
    let (ty, sobject) = row.attributes();
    Attributes {
        ty,
        url: format!("/services/data/{version}/sobjects/{sobject}/{}", row.id()),
        _p: std::marker::PhantomData,
    }
}

/// The child list of one parent on a page.
#[derive(Clone, Debug)]
pub struct ChildChunk {
    pub total: usize,
    pub rows: Vec<u32>,
    pub next_url: Option<String>,
}

/// One row of a page: the record index and, for Cases with a subquery, its child chunk.
#[derive(Clone, Debug)]
pub struct PageRow {
    pub idx: u32,
    pub child: Option<ChildChunk>,
}

struct ParentSer<'a> {
    org: &'a Org,
    row: Row<'a>,
    fields: &'a [&'static FieldDef],
    version: &'a str,
}

impl Serialize for ParentSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.fields.len() + 1))?;
        m.serialize_entry("attributes", &attributes(self.version, &self.row))?;
        for f in self.fields {
            m.serialize_entry(f.name, &V(get(self.org, self.row, f.f)))?;
        }
        m.end()
    }
}

struct RecordSer<'a> {
    org: &'a Org,
    plan: &'a Plan,
    row: Row<'a>,
    child: Option<&'a ChildChunk>,
    version: &'a str,
}

impl Serialize for RecordSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.plan.out.len() + 1))?;
        m.serialize_entry("attributes", &attributes(self.version, &self.row))?;
        for item in &self.plan.out {
            match item {
                OutItem::Field(def) => {
                    m.serialize_entry(def.name, &V(get(self.org, self.row, def.f)))?;
                }
                OutItem::Parent { rel, fields } => {
                    match parent(self.org, self.row, rel) {
                        Some(p) => m.serialize_entry(
                            rel.name,
                            &ParentSer {
                                org: self.org,
                                row: p,
                                fields,
                                version: self.version,
                            },
                        )?,
                        None => m.serialize_entry(rel.name, &())?,
                    };
                }
                OutItem::Child => match (self.child, self.plan.child.as_deref()) {
                    (Some(chunk), Some(child_plan)) if chunk.total > 0 => {
                        m.serialize_entry(
                            CHILD_EMAIL_MESSAGES,
                            &ListSer {
                                org: self.org,
                                plan: child_plan,
                                total: chunk.total,
                                next_url: chunk.next_url.as_deref(),
                                rows: Rows::Plain(&chunk.rows),
                                version: self.version,
                            },
                        )?;
                    }
                    _ => m.serialize_entry(CHILD_EMAIL_MESSAGES, &())?,
                },
            }
        }
        m.end()
    }
}

enum Rows<'a> {
    Plain(&'a [u32]),
    WithChildren(&'a [PageRow]),
}

/// `{"totalSize", "done", "nextRecordsUrl"?, "records"}`.
pub struct ListSer<'a> {
    org: &'a Org,
    plan: &'a Plan,
    total: usize,
    next_url: Option<&'a str>,
    rows: Rows<'a>,
    version: &'a str,
}

impl<'a> ListSer<'a> {
    pub fn page(
        org: &'a Org,
        plan: &'a Plan,
        total: usize,
        next_url: Option<&'a str>,
        rows: &'a [PageRow],
        version: &'a str,
    ) -> ListSer<'a> {
        ListSer {
            org,
            plan,
            total,
            next_url,
            rows: Rows::WithChildren(rows),
            version,
        }
    }
    pub fn children(
        org: &'a Org,
        plan: &'a Plan,
        total: usize,
        next_url: Option<&'a str>,
        rows: &'a [u32],
        version: &'a str,
    ) -> ListSer<'a> {
        ListSer {
            org,
            plan,
            total,
            next_url,
            rows: Rows::Plain(rows),
            version,
        }
    }
}

struct RecordsSer<'a>(&'a ListSer<'a>);

impl Serialize for RecordsSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let l = self.0;
        let object = l.plan.object;
        match &l.rows {
            Rows::Plain(rows) => {
                let mut seq = s.serialize_seq(Some(rows.len()))?;
                for &i in rows.iter() {
                    seq.serialize_element(&RecordSer {
                        org: l.org,
                        plan: l.plan,
                        row: row_of(l.org, object, i),
                        child: None,
                        version: l.version,
                    })?;
                }
                seq.end()
            }
            Rows::WithChildren(rows) => {
                let mut seq = s.serialize_seq(Some(rows.len()))?;
                for r in rows.iter() {
                    seq.serialize_element(&RecordSer {
                        org: l.org,
                        plan: l.plan,
                        row: row_of(l.org, object, r.idx),
                        child: r.child.as_ref(),
                        version: l.version,
                    })?;
                }
                seq.end()
            }
        }
    }
}

impl Serialize for ListSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("totalSize", &self.total)?;
        m.serialize_entry("done", &self.next_url.is_none())?;
        if let Some(u) = self.next_url {
            m.serialize_entry("nextRecordsUrl", u)?;
        }
        m.serialize_entry("records", &RecordsSer(self))?;
        m.end()
    }
}

/// The describe subset of one object.
pub fn describe(org: &Org, object: SObject) -> serde_json::Value {
    use serde_json::json;
    let fields: Vec<serde_json::Value> = object
        .fields()
        .iter()
        .filter(|f| !org.is_field_hidden(object, f.name))
        .map(|f| {
            json!({
                "name": f.name,
                "label": f.label,
                "type": f.ty.describe_name(),
                "length": f.length,
                "nillable": f.nillable,
                "filterable": f.filterable(),
                "sortable": f.filterable(),
                "groupable": f.filterable() && f.ty != crate::schema::FType::DateTime,
                "updateable": false,
                "createable": false,
                "custom": false,
                "calculated": f.name == "IsClosed" || f.name == "ContactEmail",
                "referenceTo": f.reference_to,
                "relationshipName": f.relationship_name,
                "polymorphicForeignKey": f.reference_to.len() > 1,
                "picklistValues": f.picklist.iter().map(|v| json!({
                    "active": true, "defaultValue": false, "label": v, "value": v, "validFor": null
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let child_relationships =
        if object == SObject::Case && org.is_object_accessible(SObject::EmailMessage) {
            json!([{
                "childSObject": "EmailMessage",
                "field": "ParentId",
                "relationshipName": "EmailMessages",
                "cascadeDelete": true,
                "deprecatedAndHidden": false
            }])
        } else {
            json!([])
        };
    let prefix = object.key_prefix().unwrap_or("000");
    json!({
        "name": object.api_name(),
        "label": object.label(),
        "labelPlural": format!("{}s", object.label()),
        "keyPrefix": prefix,
        "custom": false,
        "queryable": true,
        "retrieveable": true,
        "searchable": true,
        "createable": false,
        "updateable": false,
        "deletable": false,
        "replicateable": true,
        "fields": fields,
        "childRelationships": child_relationships,
        "urls": {
            "sobject": format!("/services/data/v59.0/sobjects/{}", object.api_name()),
            "describe": format!("/services/data/v59.0/sobjects/{}/describe", object.api_name()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_use_salesforce_format() {
        let d = crate::org::utc(2024, 3, 4, 17, 0, 0) + chrono::Duration::milliseconds(7);
        assert_eq!(format_datetime(&d), "2024-03-04T17:00:00.007+0000");
    }
}
