//! The compiled form of one `JSONSchemaProps` node (upstream `structuralschema.Structural`,
//! plus the value validations kept beside it): built once by [`super::structural`], read by
//! pruning, defaulting and validation without touching the raw JSON again.

use std::collections::BTreeMap;
use std::sync::Arc;

use regex::Regex;
use serde_json::Value;

use crate::cel::Program;

/// The `type` of a schema node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchemaType {
    /// `type: object`.
    Object,
    /// `type: array`.
    Array,
    /// `type: string`.
    String,
    /// `type: integer`.
    Integer,
    /// `type: number`.
    Number,
    /// `type: boolean`.
    Boolean,
    /// No `type` (allowed with int-or-string or preserve-unknown-fields, and in junctors).
    Untyped,
}

impl SchemaType {
    /// Parses the OpenAPI type name (`None` for an unknown name).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "object" => Self::Object,
            "array" => Self::Array,
            "string" => Self::String,
            "integer" => Self::Integer,
            "number" => Self::Number,
            "boolean" => Self::Boolean,
            "" => Self::Untyped,
            _ => return None,
        })
    }

    /// The OpenAPI type name (`""` when untyped).
    pub fn name(self) -> &'static str {
        match self {
            Self::Object => "object",
            Self::Array => "array",
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::Untyped => "",
        }
    }
}

/// `x-kubernetes-list-type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ListType {
    /// `atomic` (the default): the list is one value.
    #[default]
    Atomic,
    /// `set`: scalar items, unique.
    Set,
    /// `map`: object items keyed by `x-kubernetes-list-map-keys`, keys unique.
    Map,
}

/// `x-kubernetes-map-type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MapType {
    /// `granular` (the default).
    #[default]
    Granular,
    /// `atomic`.
    Atomic,
}

/// A compiled `pattern` (the ECMA source kept for messages).
#[derive(Clone, Debug)]
pub struct Pattern {
    /// The pattern as written in the schema.
    pub source: String,
    /// The compiled regex (linear time, size-limited).
    pub regex: Regex,
}

/// One compiled `x-kubernetes-validations` rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// The rule text.
    pub rule: String,
    /// The compiled rule.
    pub program: Arc<Program>,
    /// `message` (already trimmed).
    pub message: Option<String>,
    /// `messageExpression`, compiled.
    pub message_expression: Option<Arc<Program>>,
    /// `reason` (`FieldValueInvalid` when unset).
    pub reason: Option<String>,
    /// `fieldPath` relative to the node, e.g. `.spec.foo` or `.items['a.b']`.
    pub field_path: Option<String>,
    /// Whether the rule refers to `oldSelf` (a transition rule).
    pub uses_old_self: bool,
    /// `optionalOldSelf: true`: the rule also runs on create with `oldSelf` unset.
    pub optional_old_self: bool,
    /// Estimated cost of the rule (for the totals).
    pub estimated_cost: u64,
}

/// Value validations (upstream `ValueValidation`): everything that constrains values but does
/// not define structure. Junctors (`allOf`, ...) hold only these plus nested properties/items.
#[derive(Clone, Debug, Default)]
pub struct ValueValidation {
    /// `format` (validated by name; unknown formats are accepted as upstream does).
    pub format: Option<String>,
    /// `maximum`.
    pub maximum: Option<f64>,
    /// `exclusiveMaximum`.
    pub exclusive_maximum: bool,
    /// `minimum`.
    pub minimum: Option<f64>,
    /// `exclusiveMinimum`.
    pub exclusive_minimum: bool,
    /// `maxLength` (in characters).
    pub max_length: Option<u64>,
    /// `minLength`.
    pub min_length: Option<u64>,
    /// `pattern`.
    pub pattern: Option<Pattern>,
    /// `maxItems`.
    pub max_items: Option<u64>,
    /// `minItems`.
    pub min_items: Option<u64>,
    /// `multipleOf`.
    pub multiple_of: Option<f64>,
    /// `enum`.
    pub enum_values: Option<Vec<Value>>,
    /// `maxProperties`.
    pub max_properties: Option<u64>,
    /// `minProperties`.
    pub min_properties: Option<u64>,
    /// `required`.
    pub required: Vec<String>,
    /// `allOf`.
    pub all_of: Vec<SchemaNode>,
    /// `oneOf`.
    pub one_of: Vec<SchemaNode>,
    /// `anyOf`.
    pub any_of: Vec<SchemaNode>,
    /// `not`.
    pub not: Option<Box<SchemaNode>>,
}

/// One node of a compiled schema.
#[derive(Clone, Debug, Default)]
pub struct SchemaNode {
    /// `type`.
    pub type_: Option<SchemaType>,
    /// `nullable`.
    pub nullable: bool,
    /// `properties`.
    pub properties: BTreeMap<String, SchemaNode>,
    /// `additionalProperties` as a schema (a map's value schema).
    pub additional_properties: Option<Box<SchemaNode>>,
    /// `additionalProperties: true` or a schema: keys outside `properties` are allowed.
    pub allows_additional: bool,
    /// `items`.
    pub items: Option<Box<SchemaNode>>,
    /// `default`.
    pub default: Option<Value>,
    /// `x-kubernetes-preserve-unknown-fields`.
    pub preserve_unknown_fields: bool,
    /// `x-kubernetes-embedded-resource`.
    pub embedded_resource: bool,
    /// `x-kubernetes-int-or-string`.
    pub int_or_string: bool,
    /// `x-kubernetes-list-type`.
    pub list_type: Option<ListType>,
    /// `x-kubernetes-list-map-keys`.
    pub list_map_keys: Vec<String>,
    /// `x-kubernetes-map-type`.
    pub map_type: Option<MapType>,
    /// Value validations (`None` when the node has none: most nodes, and the memory of a
    /// compiled schema is dominated by nodes). Read through [`SchemaNode::vv`].
    pub validation: Option<Box<ValueValidation>>,
    /// `x-kubernetes-validations`, compiled.
    pub rules: Vec<Rule>,
}

static NO_VALIDATION: ValueValidation = ValueValidation {
    format: None,
    maximum: None,
    exclusive_maximum: false,
    minimum: None,
    exclusive_minimum: false,
    max_length: None,
    min_length: None,
    pattern: None,
    max_items: None,
    min_items: None,
    multiple_of: None,
    enum_values: None,
    max_properties: None,
    min_properties: None,
    required: Vec::new(),
    all_of: Vec::new(),
    one_of: Vec::new(),
    any_of: Vec::new(),
    not: None,
};

impl ValueValidation {
    /// Whether nothing is constrained.
    pub fn is_trivial(&self) -> bool {
        self.format.is_none()
            && self.maximum.is_none()
            && self.minimum.is_none()
            && self.max_length.is_none()
            && self.min_length.is_none()
            && self.pattern.is_none()
            && self.max_items.is_none()
            && self.min_items.is_none()
            && self.multiple_of.is_none()
            && self.enum_values.is_none()
            && self.max_properties.is_none()
            && self.min_properties.is_none()
            && self.required.is_empty()
            && self.all_of.is_empty()
            && self.one_of.is_empty()
            && self.any_of.is_empty()
            && self.not.is_none()
    }
}

impl SchemaNode {
    /// The node's value validations (empty ones when it has none).
    pub fn vv(&self) -> &ValueValidation {
        self.validation.as_deref().unwrap_or(&NO_VALIDATION)
    }

    /// The schema of property `name`, if declared.
    pub fn property(&self, name: &str) -> Option<&SchemaNode> {
        self.properties.get(name)
    }

    /// The schema of a field `name` of an object value: the declared property, else the
    /// `additionalProperties` schema.
    pub fn field(&self, name: &str) -> Option<&SchemaNode> {
        self.properties
            .get(name)
            .or(self.additional_properties.as_deref())
    }

    /// The effective type (`Untyped` when not given).
    pub fn ty(&self) -> SchemaType {
        self.type_.unwrap_or(SchemaType::Untyped)
    }

    /// The list type, `atomic` when unset.
    pub fn list_type(&self) -> ListType {
        self.list_type.unwrap_or_default()
    }

    /// Follows a path of property names (`["spec", "replicas"]`), items of arrays skipped.
    pub fn lookup(&self, path: &[&str]) -> Option<&SchemaNode> {
        let mut cur = self;
        for p in path {
            cur = cur.field(p)?;
        }
        Some(cur)
    }

    /// Whether any node below (or this one) has a `default` (reads then need defaulting).
    pub fn has_defaults(&self) -> bool {
        self.default.is_some()
            || self.properties.values().any(SchemaNode::has_defaults)
            || self
                .additional_properties
                .as_deref()
                .is_some_and(SchemaNode::has_defaults)
            || self.items.as_deref().is_some_and(SchemaNode::has_defaults)
    }

    /// Whether any node below (or this one) has `x-kubernetes-validations`.
    pub fn has_rules(&self) -> bool {
        !self.rules.is_empty()
            || self.properties.values().any(SchemaNode::has_rules)
            || self
                .additional_properties
                .as_deref()
                .is_some_and(SchemaNode::has_rules)
            || self.items.as_deref().is_some_and(SchemaNode::has_rules)
    }
}
