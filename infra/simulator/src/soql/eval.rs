//! Compiling the AST against the schema (names, types, permissions) and evaluating it.

use std::cmp::Ordering;
use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::lexer::CmpOp;
use super::parser::{Cond, Lit, LitAt, Name, QueryAst, SelItem};
use super::{
    INVALID_FIELD, INVALID_QUERY_FILTER_OPERATOR, INVALID_TYPE, MALFORMED_QUERY, QUERY_TIMEOUT,
    SoqlError,
};
use crate::ids::{IdKey, SfId, key_of};
use crate::org::{CaseRecord, ContactRecord, EmailRecord, Org, Owner, QueueRecord, UserRecord};
use crate::schema::{CHILD_EMAIL_MESSAGES, F, FType, FieldDef, RelDef, SObject};

/// A resolved field reference: a field of the queried object, or of a parent through `rel`.
#[derive(Clone, Copy, Debug)]
pub struct FieldRef {
    pub rel: Option<&'static RelDef>,
    pub def: &'static FieldDef,
}

/// The output layout of a record: keys in SELECT order; parent fields grouped under the
/// relationship's key at its first occurrence.
#[derive(Clone, Debug)]
pub enum OutItem {
    Field(&'static FieldDef),
    Parent {
        rel: &'static RelDef,
        fields: Vec<&'static FieldDef>,
    },
    /// The `EmailMessages` subquery.
    Child,
}

#[derive(Clone, Debug)]
pub enum CVal {
    Null,
    Str(String),
    Bool(bool),
    Dt(DateTime<Utc>),
    Id(IdKey),
}

#[derive(Clone, Debug)]
pub enum LikeTok {
    Any,
    One,
    Char(char),
}

#[derive(Clone, Debug)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Cmp {
        f: FieldRef,
        op: CmpOp,
        v: CVal,
    },
    Like {
        f: FieldRef,
        pattern: Vec<LikeTok>,
    },
    In {
        f: FieldRef,
        negated: bool,
        vals: Vec<CVal>,
    },
    InSet {
        f: FieldRef,
        negated: bool,
        set: HashSet<IdKey>,
    },
}

#[derive(Clone, Debug)]
pub struct OrderKey {
    pub f: FieldRef,
    pub desc: bool,
    pub nulls_first: bool,
}

/// A compiled query.
#[derive(Clone, Debug)]
pub struct Plan {
    pub object: SObject,
    pub count_only: bool,
    pub out: Vec<OutItem>,
    pub filter: Option<Filter>,
    pub order: Vec<OrderKey>,
    pub limit: Option<u64>,
    /// The `EmailMessages` subquery (objects: EmailMessage).
    pub child: Option<Box<Plan>>,
}

// ----- values -------------------------------------------------------------------------------

/// A record of any object.
#[derive(Clone, Copy, Debug)]
pub enum Row<'a> {
    Case(&'a CaseRecord),
    Email(&'a EmailRecord),
    Group(&'a QueueRecord),
    Contact(&'a ContactRecord),
    User(&'a UserRecord),
    Name(Owner<'a>),
}

impl<'a> Row<'a> {
    pub fn id(&self) -> &'a SfId {
        match *self {
            Row::Case(c) => &c.id,
            Row::Email(e) => &e.id,
            Row::Group(g) => &g.id,
            Row::Contact(c) => &c.id,
            Row::User(u) => &u.id,
            Row::Name(o) => match o {
                Owner::Queue(q) => &q.id,
                Owner::User(u) => &u.id,
            },
        }
    }
    /// `attributes.type` and the sObject of `attributes.url`.
    pub fn attributes(&self) -> (&'static str, &'static str) {
        match *self {
            Row::Case(_) => ("Case", "Case"),
            Row::Email(_) => ("EmailMessage", "EmailMessage"),
            Row::Group(_) => ("Group", "Group"),
            Row::Contact(_) => ("Contact", "Contact"),
            Row::User(_) => ("User", "User"),
            Row::Name(o) => ("Name", o.sobject()),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Val<'a> {
    Null,
    Str(&'a str),
    Bool(bool),
    Dt(DateTime<Utc>),
    Id(&'a SfId),
}

fn opt_str(s: &Option<String>) -> Val<'_> {
    s.as_deref().map(Val::Str).unwrap_or(Val::Null)
}
fn opt_arc(s: &Option<std::sync::Arc<str>>) -> Val<'_> {
    s.as_deref().map(Val::Str).unwrap_or(Val::Null)
}
fn opt_dt(d: &Option<DateTime<Utc>>) -> Val<'static> {
    d.map(Val::Dt).unwrap_or(Val::Null)
}

/// The value of field `f` of `row`.
pub fn get<'a>(org: &'a Org, row: Row<'a>, f: F) -> Val<'a> {
    match row {
        Row::Case(c) => match f {
            F::CaseId => Val::Id(&c.id),
            F::CaseNumber => Val::Str(&c.case_number),
            F::CaseSubject => opt_str(&c.subject),
            F::CaseStatus => Val::Str(&c.status),
            F::CaseIsClosed => Val::Bool(c.is_closed()),
            F::CaseClosedDate => opt_dt(&c.closed_date),
            F::CasePriority => opt_str(&c.priority),
            F::CaseOrigin => opt_str(&c.origin),
            F::CaseType => opt_str(&c.case_type),
            F::CaseCreatedDate => Val::Dt(c.created_date),
            F::CaseLastModifiedDate => Val::Dt(c.last_modified_date),
            F::CaseSystemModstamp => Val::Dt(c.system_modstamp),
            F::CaseDescription => c
                .description
                .as_ref()
                .map(|d| Val::Str(d.as_str()))
                .unwrap_or(Val::Null),
            F::CaseContactId => c.contact_id.as_ref().map(Val::Id).unwrap_or(Val::Null),
            F::CaseContactEmail => org
                .contact_of(c)
                .and_then(|k| k.email.as_deref())
                .map(Val::Str)
                .unwrap_or(Val::Null),
            F::CaseSuppliedEmail => opt_str(&c.supplied_email),
            F::CaseOwnerId => Val::Id(&c.owner_id),
            F::CaseIsDeleted => Val::Bool(c.is_deleted),
            _ => Val::Null,
        },
        Row::Email(e) => match f {
            F::EmId => Val::Id(&e.id),
            F::EmParentId => Val::Id(&e.parent_id),
            F::EmMessageDate => opt_dt(&e.message_date),
            F::EmFromAddress => opt_arc(&e.from_address),
            F::EmFromName => opt_arc(&e.from_name),
            F::EmToAddress => opt_arc(&e.to_address),
            F::EmCcAddress => opt_arc(&e.cc_address),
            F::EmIncoming => Val::Bool(e.incoming),
            F::EmSubject => opt_arc(&e.subject),
            F::EmStatus => Val::Str(&e.status),
            F::EmTextBody => e
                .text_body
                .as_ref()
                .map(|b| Val::Str(b.as_str()))
                .unwrap_or(Val::Null),
            F::EmHtmlBody => e
                .html_body
                .as_ref()
                .map(|b| Val::Str(b.as_str()))
                .unwrap_or(Val::Null),
            F::EmHasAttachment => Val::Bool(e.has_attachment),
            F::EmCreatedDate => Val::Dt(e.created_date),
            F::EmSystemModstamp => Val::Dt(e.system_modstamp),
            _ => Val::Null,
        },
        Row::Group(g) => match f {
            F::GrId => Val::Id(&g.id),
            F::GrName => Val::Str(&g.name),
            F::GrDeveloperName => Val::Str(&g.developer_name),
            F::GrType => Val::Str(&g.group_type),
            _ => Val::Null,
        },
        Row::Contact(c) => match f {
            F::CoId => Val::Id(&c.id),
            F::CoName => Val::Str(&c.name),
            F::CoEmail => opt_str(&c.email),
            _ => Val::Null,
        },
        Row::User(u) => match f {
            F::UsId => Val::Id(&u.id),
            F::UsName => Val::Str(&u.name),
            _ => Val::Null,
        },
        Row::Name(o) => match f {
            F::NmId => Val::Id(o.id()),
            F::NmName => Val::Str(o.name()),
            F::NmType => Val::Str(o.type_name()),
            _ => Val::Null,
        },
    }
}

/// The parent record of `row` through `rel` (`None` when the lookup is empty).
pub fn parent<'a>(org: &'a Org, row: Row<'a>, rel: &RelDef) -> Option<Row<'a>> {
    match (row, rel.target) {
        (Row::Case(c), SObject::Contact) => org.contact_of(c).map(Row::Contact),
        (Row::Case(c), SObject::Name) => org.owner_of(c).map(Row::Name),
        (Row::Email(e), SObject::Case) => org.case_by_id(&e.parent_id).map(Row::Case),
        _ => None,
    }
}

pub fn value<'a>(org: &'a Org, row: Row<'a>, fr: &FieldRef) -> Val<'a> {
    match fr.rel {
        None => get(org, row, fr.def.f),
        Some(rel) => match parent(org, row, rel) {
            Some(p) => get(org, p, fr.def.f),
            None => Val::Null,
        },
    }
}

pub fn row_of(org: &Org, object: SObject, idx: u32) -> Row<'_> {
    let i = idx as usize;
    match object {
        SObject::Case => Row::Case(&org.cases()[i]),
        SObject::EmailMessage => Row::Email(&org.emails()[i]),
        SObject::Group => Row::Group(&org.groups()[i]),
        SObject::Contact => Row::Contact(&org.contacts()[i]),
        SObject::User | SObject::Name => Row::User(&org.users()[i]),
    }
}

// ----- compiling ----------------------------------------------------------------------------

struct Ctx<'a> {
    src: &'a str,
    org: &'a Org,
    semi_joins: usize,
}

fn no_such_column(ctx: &Ctx, name: &Name, field: &str, entity: &str) -> SoqlError {
    SoqlError::at(
        ctx.src,
        name.pos,
        INVALID_FIELD,
        format!(
            "No such column '{field}' on entity '{entity}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names."
        ),
    )
}

fn bad_relationship(ctx: &Ctx, name: &Name, rel: &str, where_: &str) -> SoqlError {
    SoqlError::at(
        ctx.src,
        name.pos,
        INVALID_FIELD,
        format!(
            "Didn't understand relationship '{rel}' in {where_}. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names."
        ),
    )
}

fn resolve(ctx: &Ctx, object: SObject, name: &Name) -> Result<FieldRef, SoqlError> {
    let parts: Vec<&str> = name.text.split('.').collect();
    match parts.as_slice() {
        [field] => {
            let def = object
                .field(field)
                .filter(|d| !ctx.org.is_field_hidden(object, d.name))
                .ok_or_else(|| no_such_column(ctx, name, field, object.api_name()))?;
            Ok(FieldRef { rel: None, def })
        }
        [rel, field] => {
            let Some(r) = object.relationship(rel) else {
                return Err(bad_relationship(ctx, name, rel, "field path"));
            };
            if !ctx.org.is_object_accessible(r.target) {
                return Err(bad_relationship(ctx, name, rel, "field path"));
            }
            let def = r
                .target
                .field(field)
                .filter(|d| !ctx.org.is_field_hidden(r.target, d.name))
                .ok_or_else(|| no_such_column(ctx, name, field, r.target.api_name()))?;
            Ok(FieldRef { rel: Some(r), def })
        }
        [rel, ..] => Err(bad_relationship(ctx, name, rel, "field path")),
        [] => Err(SoqlError::at(
            ctx.src,
            name.pos,
            MALFORMED_QUERY,
            "unexpected token",
        )),
    }
}

fn display_name(fr: &FieldRef) -> String {
    match fr.rel {
        Some(r) => format!("{}.{}", r.name, fr.def.name),
        None => fr.def.name.to_string(),
    }
}

fn resolve_object(ctx: &Ctx, from: &Name) -> Result<SObject, SoqlError> {
    match SObject::queryable_by_name(&from.text) {
        Some(o) if ctx.org.is_object_accessible(o) => Ok(o),
        _ => Err(SoqlError::at(
            ctx.src,
            from.pos,
            INVALID_TYPE,
            format!(
                "sObject type '{}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names.",
                from.text
            ),
        )),
    }
}

/// Compiles a parsed top-level query.
pub fn compile(ast: &QueryAst, src: &str, org: &Org) -> Result<Plan, SoqlError> {
    let mut ctx = Ctx {
        src,
        org,
        semi_joins: 0,
    };
    let object = resolve_object(&ctx, &ast.from)?;
    compile_query(&mut ctx, ast, object, false)
}

fn compile_query(
    ctx: &mut Ctx,
    ast: &QueryAst,
    object: SObject,
    is_child: bool,
) -> Result<Plan, SoqlError> {
    let mut out: Vec<OutItem> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut count_only = false;
    let mut child: Option<Box<Plan>> = None;
    for item in &ast.select {
        match item {
            SelItem::Count(pos) => {
                if ast.select.len() != 1 || is_child {
                    return Err(SoqlError::at(
                        ctx.src,
                        *pos,
                        MALFORMED_QUERY,
                        "COUNT() must be the only element in the SELECT list.",
                    ));
                }
                count_only = true;
            }
            SelItem::Field(name) => {
                let fr = resolve(ctx, object, name)?;
                let key = display_name(&fr).to_ascii_lowercase();
                if seen.contains(&key) {
                    return Err(SoqlError::at(
                        ctx.src,
                        name.pos,
                        MALFORMED_QUERY,
                        format!("duplicate field selected: {}", display_name(&fr)),
                    ));
                }
                seen.push(key);
                match fr.rel {
                    None => out.push(OutItem::Field(fr.def)),
                    Some(rel) => {
                        let existing = out.iter_mut().find_map(|o| match o {
                            OutItem::Parent { rel: r, fields } if std::ptr::eq(*r, rel) => {
                                Some(fields)
                            }
                            _ => None,
                        });
                        match existing {
                            Some(fields) => fields.push(fr.def),
                            None => out.push(OutItem::Parent {
                                rel,
                                fields: vec![fr.def],
                            }),
                        }
                    }
                }
            }
            SelItem::Sub(sub) => {
                let rel_ok = object == SObject::Case
                    && !is_child
                    && sub.from.text.eq_ignore_ascii_case(CHILD_EMAIL_MESSAGES)
                    && ctx.org.is_object_accessible(SObject::EmailMessage);
                if !rel_ok {
                    return Err(bad_relationship(
                        ctx,
                        &sub.from,
                        &sub.from.text,
                        "FROM part of query call",
                    ));
                }
                if child.is_some() {
                    return Err(SoqlError::at(
                        ctx.src,
                        sub.from.pos,
                        MALFORMED_QUERY,
                        "duplicate field selected: EmailMessages",
                    ));
                }
                let plan = compile_query(ctx, sub, SObject::EmailMessage, true)?;
                child = Some(Box::new(plan));
                out.push(OutItem::Child);
            }
        }
    }
    let filter = match &ast.where_ {
        Some(c) => Some(compile_cond(ctx, object, c, false)?),
        None => None,
    };
    let mut order = Vec::new();
    for o in &ast.order {
        let fr = resolve(ctx, object, &o.field)?;
        if fr.def.ty == FType::Textarea {
            return Err(SoqlError::at(
                ctx.src,
                o.field.pos,
                INVALID_FIELD,
                format!(
                    "field '{}' can not be sorted in a query call",
                    display_name(&fr)
                ),
            ));
        }
        order.push(OrderKey {
            f: fr,
            desc: o.desc,
            nulls_first: o.nulls_first.unwrap_or(!o.desc),
        });
    }
    Ok(Plan {
        object,
        count_only,
        out,
        filter,
        order,
        limit: ast.limit,
        child,
    })
}

fn filter_type_error(ctx: &Ctx, lit: &LitAt, fr: &FieldRef) -> SoqlError {
    let ty = fr.def.ty.filter_type_name();
    let quoted = matches!(fr.def.ty, FType::Id | FType::Reference) || fr.def.ty.is_stringish();
    let how = if quoted {
        "should be enclosed in quotes"
    } else {
        "should not be enclosed in quotes"
    };
    SoqlError::at(
        ctx.src,
        lit.pos,
        INVALID_FIELD,
        format!(
            "value of filter criterion for field '{}' must be of type {ty} and {how}",
            display_name(fr)
        ),
    )
}

/// Type-checks a literal against a field and converts it.
fn convert(ctx: &Ctx, fr: &FieldRef, lit: &LitAt) -> Result<CVal, SoqlError> {
    if let Lit::Null = lit.lit {
        return Ok(CVal::Null);
    }
    match fr.def.ty {
        FType::Id | FType::Reference => match &lit.lit {
            Lit::Str { value, .. } => key_of(value).map(CVal::Id).ok_or_else(|| {
                SoqlError::at(
                    ctx.src,
                    lit.pos,
                    INVALID_QUERY_FILTER_OPERATOR,
                    format!("invalid ID field: {value}"),
                )
            }),
            _ => Err(filter_type_error(ctx, lit, fr)),
        },
        FType::String | FType::Picklist | FType::Email | FType::Textarea => match &lit.lit {
            Lit::Str { value, .. } => Ok(CVal::Str(value.clone())),
            _ => Err(filter_type_error(ctx, lit, fr)),
        },
        FType::Boolean => match lit.lit {
            Lit::Bool(b) => Ok(CVal::Bool(b)),
            _ => Err(filter_type_error(ctx, lit, fr)),
        },
        FType::DateTime => match lit.lit {
            Lit::DateTime(d) => Ok(CVal::Dt(d)),
            _ => Err(filter_type_error(ctx, lit, fr)),
        },
    }
}

fn compile_cond(
    ctx: &mut Ctx,
    object: SObject,
    c: &Cond,
    in_or: bool,
) -> Result<Filter, SoqlError> {
    let filterable = |ctx: &Ctx, name: &Name, fr: &FieldRef| -> Result<(), SoqlError> {
        if fr.def.filterable() {
            Ok(())
        } else {
            Err(SoqlError::at(
                ctx.src,
                name.pos,
                INVALID_FIELD,
                format!(
                    "field '{}' can not be filtered in a query call",
                    display_name(fr)
                ),
            ))
        }
    };
    Ok(match c {
        Cond::And(items) => Filter::And(
            items
                .iter()
                .map(|i| compile_cond(ctx, object, i, in_or))
                .collect::<Result<_, _>>()?,
        ),
        Cond::Or(items) => Filter::Or(
            items
                .iter()
                .map(|i| compile_cond(ctx, object, i, true))
                .collect::<Result<_, _>>()?,
        ),
        Cond::Not(inner) => Filter::Not(Box::new(compile_cond(ctx, object, inner, in_or)?)),
        Cond::Cmp { field, op, lit } => {
            let fr = resolve(ctx, object, field)?;
            filterable(ctx, field, &fr)?;
            let v = convert(ctx, &fr, lit)?;
            let ordered = !matches!(op, CmpOp::Eq | CmpOp::Ne);
            if ordered && fr.def.ty == FType::Boolean {
                return Err(SoqlError::at(
                    ctx.src,
                    field.pos,
                    INVALID_QUERY_FILTER_OPERATOR,
                    format!("invalid operator on boolean field: {}", display_name(&fr)),
                ));
            }
            Filter::Cmp { f: fr, op: *op, v }
        }
        Cond::Like { field, lit } => {
            let fr = resolve(ctx, object, field)?;
            filterable(ctx, field, &fr)?;
            if !fr.def.ty.is_stringish() {
                return Err(SoqlError::at(
                    ctx.src,
                    field.pos,
                    INVALID_QUERY_FILTER_OPERATOR,
                    format!(
                        "invalid operator on {} field: {}",
                        fr.def.ty.describe_name(),
                        display_name(&fr)
                    ),
                ));
            }
            let Lit::Str { like_raw, .. } = &lit.lit else {
                return Err(filter_type_error(ctx, lit, &fr));
            };
            Filter::Like {
                f: fr,
                pattern: like_pattern(like_raw),
            }
        }
        Cond::In {
            field,
            negated,
            list,
        } => {
            let fr = resolve(ctx, object, field)?;
            filterable(ctx, field, &fr)?;
            let vals = list
                .iter()
                .map(|l| convert(ctx, &fr, l))
                .collect::<Result<_, _>>()?;
            Filter::In {
                f: fr,
                negated: *negated,
                vals,
            }
        }
        Cond::SemiJoin {
            field,
            negated,
            sub,
        } => {
            let fr = resolve(ctx, object, field)?;
            if in_or {
                return Err(SoqlError::at(
                    ctx.src,
                    field.pos,
                    MALFORMED_QUERY,
                    "Semi join sub-selects are not allowed with the 'OR' operator",
                ));
            }
            ctx.semi_joins += 1;
            if ctx.semi_joins > 2 {
                return Err(SoqlError::at(
                    ctx.src,
                    field.pos,
                    MALFORMED_QUERY,
                    "maximum 2 semi join sub-selects are allowed",
                ));
            }
            if !matches!(fr.def.ty, FType::Id | FType::Reference) {
                return Err(SoqlError::at(
                    ctx.src,
                    field.pos,
                    INVALID_FIELD,
                    format!(
                        "The selected field '{}' in the subquery and the left operand field in the where expression in the outer query '{}' should point to the same object type",
                        "Id",
                        display_name(&fr)
                    ),
                ));
            }
            let sub_obj = resolve_object(ctx, &sub.from)?;
            let sub_plan = compile_query(ctx, sub, sub_obj, true)?;
            let selected = match (sub_plan.out.as_slice(), sub_plan.child.is_some()) {
                ([OutItem::Field(def)], false)
                    if matches!(def.ty, FType::Id | FType::Reference) =>
                {
                    *def
                }
                _ => {
                    return Err(SoqlError::at(
                        ctx.src,
                        sub.pos,
                        MALFORMED_QUERY,
                        "semi join sub selects can only query id fields",
                    ));
                }
            };
            let rows = run(ctx.org, &sub_plan, Utc::now(), false, None)?;
            let set: HashSet<IdKey> = rows
                .iter()
                .filter_map(
                    |&i| match get(ctx.org, row_of(ctx.org, sub_obj, i), selected.f) {
                        Val::Id(id) => Some(id.key()),
                        _ => None,
                    },
                )
                .collect();
            Filter::InSet {
                f: fr,
                negated: *negated,
                set,
            }
        }
    })
}

fn like_pattern(raw: &str) -> Vec<LikeTok> {
    let mut out = Vec::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.extend(n.to_lowercase().map(LikeTok::Char));
                }
            }
            '%' => out.push(LikeTok::Any),
            '_' => out.push(LikeTok::One),
            _ => out.extend(c.to_lowercase().map(LikeTok::Char)),
        }
    }
    out
}

fn like_match(pattern: &[LikeTok], text: &[char]) -> bool {
    // Classic wildcard matching with backtracking on the last `%`.
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(LikeTok::Char(c)) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            Some(LikeTok::One) => {
                p += 1;
                t += 1;
            }
            Some(LikeTok::Any) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..]
        .iter()
        .all(|x| matches!(x, LikeTok::Any))
}

/// Case-insensitive string order (SOQL compares text case-insensitively).
pub fn cmp_ci(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        let (x, y) = (a.as_bytes(), b.as_bytes());
        for (p, q) in x.iter().zip(y) {
            let o = p.to_ascii_lowercase().cmp(&q.to_ascii_lowercase());
            if o != Ordering::Equal {
                return o;
            }
        }
        return x.len().cmp(&y.len());
    }
    a.chars()
        .flat_map(char::to_lowercase)
        .cmp(b.chars().flat_map(char::to_lowercase))
}

fn cmp_val(v: &Val, c: &CVal) -> Option<Ordering> {
    match (v, c) {
        (Val::Str(s), CVal::Str(l)) => Some(cmp_ci(s, l)),
        (Val::Id(id), CVal::Id(k)) => Some(id.key().cmp(k)),
        (Val::Bool(b), CVal::Bool(l)) => Some(b.cmp(l)),
        (Val::Dt(d), CVal::Dt(l)) => Some(d.cmp(l)),
        _ => None,
    }
}

fn apply(op: CmpOp, o: Ordering) -> bool {
    match op {
        CmpOp::Eq => o == Ordering::Equal,
        CmpOp::Ne => o != Ordering::Equal,
        CmpOp::Lt => o == Ordering::Less,
        CmpOp::Le => o != Ordering::Greater,
        CmpOp::Gt => o == Ordering::Greater,
        CmpOp::Ge => o != Ordering::Less,
    }
}

pub fn matches(org: &Org, row: Row<'_>, f: &Filter) -> bool {
    match f {
        Filter::And(items) => items.iter().all(|i| matches(org, row, i)),
        Filter::Or(items) => items.iter().any(|i| matches(org, row, i)),
        Filter::Not(inner) => !matches(org, row, inner),
        Filter::Cmp { f, op, v } => {
            let val = value(org, row, f);
            match (&val, v) {
                (Val::Null, CVal::Null) => *op == CmpOp::Eq,
                (Val::Null, _) => *op == CmpOp::Ne,
                (_, CVal::Null) => *op == CmpOp::Ne,
                _ => cmp_val(&val, v).is_some_and(|o| apply(*op, o)),
            }
        }
        Filter::Like { f, pattern } => match value(org, row, f) {
            Val::Str(s) => {
                let text: Vec<char> = s.chars().flat_map(char::to_lowercase).collect();
                like_match(pattern, &text)
            }
            _ => false,
        },
        Filter::In { f, negated, vals } => {
            let val = value(org, row, f);
            let found = vals.iter().any(|c| match (&val, c) {
                (Val::Null, CVal::Null) => true,
                _ => cmp_val(&val, c) == Some(Ordering::Equal),
            });
            found != *negated
        }
        Filter::InSet { f, negated, set } => match value(org, row, f) {
            Val::Id(id) => set.contains(&id.key()) != *negated,
            _ => *negated,
        },
    }
}

fn order_cmp(a: &Val, b: &Val, desc: bool, nulls_first: bool) -> Ordering {
    let base = match (a, b) {
        (Val::Null, Val::Null) => return Ordering::Equal,
        (Val::Null, _) => {
            return if nulls_first {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        (_, Val::Null) => {
            return if nulls_first {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        (Val::Str(x), Val::Str(y)) => cmp_ci(x, y),
        (Val::Id(x), Val::Id(y)) => x.key().cmp(&y.key()),
        (Val::Bool(x), Val::Bool(y)) => x.cmp(y),
        (Val::Dt(x), Val::Dt(y)) => x.cmp(y),
        _ => Ordering::Equal,
    };
    if desc { base.reverse() } else { base }
}

fn sort_rows(org: &Org, object: SObject, order: &[OrderKey], rows: &mut [u32]) {
    if order.is_empty() || rows.len() < 2 {
        return;
    }
    // Evaluate each row's sort key once, not once per comparison.
    let mut keyed: Vec<(Vec<Val<'_>>, u32)> = rows
        .iter()
        .map(|&i| {
            let row = row_of(org, object, i);
            (order.iter().map(|k| value(org, row, &k.f)).collect(), i)
        })
        .collect();
    keyed.sort_by(|(a, _), (b, _)| {
        for (k, (x, y)) in order.iter().zip(a.iter().zip(b.iter())) {
            let o = order_cmp(x, y, k.desc, k.nulls_first);
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    });
    for (slot, (_, i)) in rows.iter_mut().zip(keyed) {
        *slot = i;
    }
}

fn visible_email(org: &Org, e: &EmailRecord, now: DateTime<Utc>, all_rows: bool) -> bool {
    org.case_by_id(&e.parent_id)
        .is_none_or(|c| Org::case_visible(c, now, all_rows))
}

/// Evaluates a top-level plan: the matching row indices, ordered and limited. `timeout_rows`
/// simulates QUERY_TIMEOUT when more rows than that match.
pub fn run(
    org: &Org,
    plan: &Plan,
    now: DateTime<Utc>,
    all_rows: bool,
    timeout_rows: Option<usize>,
) -> Result<Vec<u32>, SoqlError> {
    let keep = |row: Row<'_>| plan.filter.as_ref().is_none_or(|f| matches(org, row, f));
    let mut rows: Vec<u32> = match plan.object {
        SObject::Case => org
            .cases()
            .iter()
            .enumerate()
            .filter(|(_, c)| Org::case_visible(c, now, all_rows) && keep(Row::Case(c)))
            .map(|(i, _)| i as u32)
            .collect(),
        SObject::EmailMessage => org
            .emails()
            .iter()
            .enumerate()
            .filter(|(_, e)| visible_email(org, e, now, all_rows) && keep(Row::Email(e)))
            .map(|(i, _)| i as u32)
            .collect(),
        SObject::Group => (0..org.groups().len() as u32)
            .filter(|&i| keep(row_of(org, SObject::Group, i)))
            .collect(),
        SObject::Contact => (0..org.contacts().len() as u32)
            .filter(|&i| keep(row_of(org, SObject::Contact, i)))
            .collect(),
        SObject::User | SObject::Name => (0..org.users().len() as u32)
            .filter(|&i| keep(row_of(org, SObject::User, i)))
            .collect(),
    };
    if let Some(max) = timeout_rows
        && rows.len() > max
    {
        return Err(SoqlError::plain(
            QUERY_TIMEOUT,
            "Your query request was running for too long.",
        ));
    }
    sort_rows(org, plan.object, &plan.order, &mut rows);
    if let Some(limit) = plan.limit {
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    Ok(rows)
}

/// The child rows (EmailMessage indices) of one Case for the `EmailMessages` subquery.
pub fn child_rows(org: &Org, child: &Plan, case_idx: usize) -> Vec<u32> {
    let mut rows: Vec<u32> = org
        .email_indices_of_case(case_idx)
        .iter()
        .copied()
        .filter(|&i| {
            child
                .filter
                .as_ref()
                .is_none_or(|f| matches(org, row_of(org, SObject::EmailMessage, i), f))
        })
        .collect();
    sort_rows(org, SObject::EmailMessage, &child.order, &mut rows);
    if let Some(limit) = child.limit {
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    rows
}
