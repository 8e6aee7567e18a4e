//! JSON v2 document → gnostic messages.

use prost::Message;
use serde_json::{Map, Value};

use super::*;

fn s(obj: &Map<String, Value>, key: &str) -> String {
    obj.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn strings(obj: &Map<String, Value>, key: &str) -> Vec<String> {
    obj.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn f(obj: &Map<String, Value>, key: &str) -> f64 {
    obj.get(key).and_then(Value::as_f64).unwrap_or_default()
}

fn i(obj: &Map<String, Value>, key: &str) -> i64 {
    obj.get(key).and_then(Value::as_i64).unwrap_or_default()
}

fn b(obj: &Map<String, Value>, key: &str) -> bool {
    obj.get(key).and_then(Value::as_bool).unwrap_or_default()
}

fn named_schemas(value: Option<&Value>) -> Vec<NamedSchema> {
    value
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| NamedSchema {
                    name: k.clone(),
                    value: Some(schema(v)),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One JSON schema as a gnostic `Schema`.
pub fn schema(value: &Value) -> Schema {
    let empty = Map::new();
    let o = value.as_object().unwrap_or(&empty);
    let additional_properties = o.get("additionalProperties").map(|ap| {
        Box::new(AdditionalPropertiesItem {
            oneof: Some(match ap {
                Value::Bool(flag) => additional_properties_item::Oneof::Boolean(*flag),
                other => additional_properties_item::Oneof::Schema(Box::new(schema(other))),
            }),
        })
    });
    let r#type = match o.get("type") {
        Some(Value::String(t)) => Some(TypeItem {
            value: vec![t.clone()],
        }),
        Some(Value::Array(ts)) => Some(TypeItem {
            value: ts
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        }),
        _ => None,
    };
    let items = o.get("items").map(|it| match it {
        Value::Array(list) => ItemsItem {
            schema: list.iter().map(schema).collect(),
        },
        single => ItemsItem {
            schema: vec![schema(single)],
        },
    });
    let properties = o.get("properties").map(|p| Properties {
        additional_properties: named_schemas(Some(p)),
    });
    Schema {
        r#ref: s(o, "$ref"),
        format: s(o, "format"),
        title: s(o, "title"),
        description: s(o, "description"),
        default: o.get("default").map(any),
        multiple_of: f(o, "multipleOf"),
        maximum: f(o, "maximum"),
        exclusive_maximum: b(o, "exclusiveMaximum"),
        minimum: f(o, "minimum"),
        exclusive_minimum: b(o, "exclusiveMinimum"),
        max_length: i(o, "maxLength"),
        min_length: i(o, "minLength"),
        pattern: s(o, "pattern"),
        max_items: i(o, "maxItems"),
        min_items: i(o, "minItems"),
        unique_items: b(o, "uniqueItems"),
        max_properties: i(o, "maxProperties"),
        min_properties: i(o, "minProperties"),
        required: strings(o, "required"),
        r#enum: o
            .get("enum")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(any).collect())
            .unwrap_or_default(),
        additional_properties,
        r#type,
        items,
        all_of: o
            .get("allOf")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(schema).collect())
            .unwrap_or_default(),
        properties,
        discriminator: s(o, "discriminator"),
        read_only: b(o, "readOnly"),
        example: o.get("example").map(any),
        vendor_extension: extensions(o),
    }
}

fn parameter(value: &Value) -> ParametersItem {
    let empty = Map::new();
    let o = value.as_object().unwrap_or(&empty);
    if let Some(r) = o.get("$ref").and_then(Value::as_str) {
        return ParametersItem {
            oneof: Some(parameters_item::Oneof::JsonReference(JsonReference {
                r#ref: r.to_string(),
                description: s(o, "description"),
            })),
        };
    }
    let p = match o.get("in").and_then(Value::as_str) {
        Some("body") => parameter::Oneof::BodyParameter(BodyParameter {
            description: s(o, "description"),
            name: s(o, "name"),
            r#in: "body".into(),
            required: b(o, "required"),
            schema: o.get("schema").map(schema),
            vendor_extension: extensions(o),
        }),
        Some("path") => parameter::Oneof::NonBodyParameter(NonBodyParameter {
            oneof: Some(non_body_parameter::Oneof::PathParameterSubSchema(
                PathParameterSubSchema {
                    required: b(o, "required"),
                    r#in: "path".into(),
                    description: s(o, "description"),
                    name: s(o, "name"),
                    r#type: s(o, "type"),
                    format: s(o, "format"),
                    unique_items: b(o, "uniqueItems"),
                    vendor_extension: extensions(o),
                },
            )),
        }),
        _ => parameter::Oneof::NonBodyParameter(NonBodyParameter {
            oneof: Some(non_body_parameter::Oneof::QueryParameterSubSchema(
                QueryParameterSubSchema {
                    required: b(o, "required"),
                    r#in: s(o, "in"),
                    description: s(o, "description"),
                    name: s(o, "name"),
                    r#type: s(o, "type"),
                    format: s(o, "format"),
                    unique_items: b(o, "uniqueItems"),
                    vendor_extension: extensions(o),
                },
            )),
        }),
    };
    ParametersItem {
        oneof: Some(parameters_item::Oneof::Parameter(Parameter {
            oneof: Some(p),
        })),
    }
}

fn parameters(o: &Map<String, Value>) -> Vec<ParametersItem> {
    o.get("parameters")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(parameter).collect())
        .unwrap_or_default()
}

fn operation(value: Option<&Value>) -> Option<Operation> {
    let o = value?.as_object()?;
    let responses = o
        .get("responses")
        .and_then(Value::as_object)
        .map(|rs| Responses {
            response_code: rs
                .iter()
                .filter(|(k, _)| !k.starts_with("x-"))
                .map(|(code, r)| {
                    let empty = Map::new();
                    let ro = r.as_object().unwrap_or(&empty);
                    NamedResponseValue {
                        name: code.clone(),
                        value: Some(ResponseValue {
                            oneof: Some(response_value::Oneof::Response(Response {
                                description: s(ro, "description"),
                                schema: ro.get("schema").map(|sc| SchemaItem {
                                    oneof: Some(schema_item::Oneof::Schema(schema(sc))),
                                }),
                                vendor_extension: extensions(ro),
                            })),
                        }),
                    }
                })
                .collect(),
            vendor_extension: extensions(rs),
        });
    Some(Operation {
        tags: strings(o, "tags"),
        summary: s(o, "summary"),
        description: s(o, "description"),
        operation_id: s(o, "operationId"),
        produces: strings(o, "produces"),
        consumes: strings(o, "consumes"),
        parameters: parameters(o),
        responses,
        schemes: strings(o, "schemes"),
        deprecated: b(o, "deprecated"),
        vendor_extension: extensions(o),
    })
}

fn path_item(value: &Value) -> PathItem {
    let empty = Map::new();
    let o = value.as_object().unwrap_or(&empty);
    PathItem {
        r#ref: s(o, "$ref"),
        get: operation(o.get("get")),
        put: operation(o.get("put")),
        post: operation(o.get("post")),
        delete: operation(o.get("delete")),
        options: operation(o.get("options")),
        head: operation(o.get("head")),
        patch: operation(o.get("patch")),
        parameters: parameters(o),
        vendor_extension: extensions(o),
    }
}

/// The JSON v2 document as a gnostic `Document`.
pub fn document_from_json(doc: &Value) -> Document {
    let empty = Map::new();
    let o = doc.as_object().unwrap_or(&empty);
    let info = o.get("info").and_then(Value::as_object).map(|io| Info {
        title: s(io, "title"),
        version: s(io, "version"),
        description: s(io, "description"),
        vendor_extension: extensions(io),
    });
    let paths = o.get("paths").and_then(Value::as_object).map(|ps| Paths {
        vendor_extension: extensions(ps),
        path: ps
            .iter()
            .filter(|(k, _)| k.starts_with('/'))
            .map(|(k, v)| NamedPathItem {
                name: k.clone(),
                value: Some(path_item(v)),
            })
            .collect(),
    });
    let security = o
        .get("security")
        .and_then(Value::as_array)
        .map(|reqs| {
            reqs.iter()
                .filter_map(Value::as_object)
                .map(|req| SecurityRequirement {
                    additional_properties: req
                        .iter()
                        .map(|(k, v)| NamedStringArray {
                            name: k.clone(),
                            value: Some(StringArray {
                                value: v
                                    .as_array()
                                    .map(|a| {
                                        a.iter()
                                            .filter_map(Value::as_str)
                                            .map(str::to_string)
                                            .collect()
                                    })
                                    .unwrap_or_default(),
                            }),
                        })
                        .collect(),
                })
                .collect()
        })
        .unwrap_or_default();
    let security_definitions = o
        .get("securityDefinitions")
        .and_then(Value::as_object)
        .map(|sd| SecurityDefinitions {
            additional_properties: sd
                .iter()
                .filter_map(|(k, v)| {
                    let vo = v.as_object()?;
                    Some(NamedSecurityDefinitionsItem {
                        name: k.clone(),
                        value: Some(SecurityDefinitionsItem {
                            oneof: Some(security_definitions_item::Oneof::ApiKeySecurity(
                                ApiKeySecurity {
                                    r#type: s(vo, "type"),
                                    name: s(vo, "name"),
                                    r#in: s(vo, "in"),
                                    description: s(vo, "description"),
                                    vendor_extension: extensions(vo),
                                },
                            )),
                        }),
                    })
                })
                .collect(),
        });
    Document {
        swagger: s(o, "swagger"),
        info,
        host: s(o, "host"),
        base_path: s(o, "basePath"),
        schemes: strings(o, "schemes"),
        consumes: strings(o, "consumes"),
        produces: strings(o, "produces"),
        paths,
        definitions: o.get("definitions").map(|d| Definitions {
            additional_properties: named_schemas(Some(d)),
        }),
        security,
        security_definitions,
        vendor_extension: extensions(o),
    }
}

/// The JSON v2 document encoded as gnostic protobuf bytes.
pub fn encode_document(doc: &Value) -> Vec<u8> {
    document_from_json(doc).encode_to_vec()
}
