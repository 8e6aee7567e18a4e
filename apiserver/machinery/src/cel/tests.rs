use serde_json::json;

use super::*;

fn run(src: &str, self_json: serde_json::Value) -> Result<Value, EvalError> {
    let vars = vec![("self".to_string(), TypeDesc::Dyn)];
    let p = Program::compile(src, &vars).unwrap_or_else(|e| panic!("{src}: {e}"));
    let mut act = Activation::new();
    act.bind("self", Value::from_json(&self_json));
    p.eval(&act, 1_000_000).map(|(v, _)| v)
}

fn must_bool(src: &str, self_json: serde_json::Value) -> bool {
    match run(src, self_json) {
        Ok(Value::Bool(b)) => b,
        other => panic!("{src}: {other:?}"),
    }
}

#[test]
fn arithmetic_logic_and_precedence() {
    let t = json!({});
    assert!(must_bool("1 + 2 * 3 == 7", t.clone()));
    assert!(must_bool("(1 + 2) * 3 == 9", t.clone()));
    assert!(must_bool("7 / 2 == 3 && 7 % 2 == 1", t.clone()));
    assert!(must_bool("-3 < 2 && !(1 > 2)", t.clone()));
    assert!(must_bool("1u + 2u == 3u", t.clone()));
    assert!(must_bool("1.5 * 2.0 == 3.0", t.clone()));
    assert!(must_bool("1 == 1.0 && 2u == 2", t.clone()));
    assert!(must_bool("true ? 1 == 1 : false", t.clone()));
    assert!(must_bool("'a' + 'b' == 'ab'", t.clone()));
    assert!(must_bool("[1, 2] + [3] == [1, 2, 3]", t.clone()));
    assert!(must_bool("{'a': 1}['a'] == 1", t.clone()));
    assert!(must_bool("2 in [1, 2, 3] && !(4 in [1, 2])", t.clone()));
    assert!(must_bool("'k' in {'k': 1}", t.clone()));
    assert!(must_bool("0x10 == 16", t.clone()));
    assert!(must_bool("r'a\\d' == 'a\\\\d'", t.clone()));
    assert!(must_bool("\"\"\"x\ny\"\"\".size() == 3", t.clone()));
    assert!(must_bool("'\\u00e9' == 'é'", t.clone()));
    assert!(must_bool("-9223372036854775808 < 0", t.clone()));
}

#[test]
fn errors_absorbed_by_logic_like_cel() {
    // `&&`/`||` are commutative over errors.
    assert!(!must_bool("self.missing == 1 && false", json!({})));
    assert!(must_bool("self.missing == 1 || true", json!({})));
    assert!(
        matches!(run("self.missing == 1", json!({})), Err(EvalError::Runtime(m)) if m == "no such key: missing")
    );
    assert!(
        matches!(run("1 / 0 == 1", json!({})), Err(EvalError::Runtime(m)) if m == "division by zero")
    );
    assert!(
        matches!(run("9223372036854775807 + 1 > 0", json!({})), Err(EvalError::Runtime(m)) if m == "integer overflow")
    );
    assert!(
        matches!(run("[1][3] == 1", json!({})), Err(EvalError::Runtime(m)) if m.contains("index out of bounds"))
    );
    assert!(
        matches!(run("'a' < 1", json!({})), Err(EvalError::Runtime(m)) if m.starts_with("no such overload"))
    );
}

#[test]
fn macros_and_has() {
    let s = json!({"items": [1, 2, 3], "m": {"a": 1, "b": 2}, "name": "x"});
    assert!(must_bool("self.items.all(i, i > 0)", s.clone()));
    assert!(must_bool("self.items.exists(i, i == 2)", s.clone()));
    assert!(must_bool("self.items.exists_one(i, i > 2)", s.clone()));
    assert!(must_bool(
        "self.items.map(i, i * 2) == [2, 4, 6]",
        s.clone()
    ));
    assert!(must_bool(
        "self.items.filter(i, i % 2 == 1) == [1, 3]",
        s.clone()
    ));
    assert!(must_bool(
        "self.items.map(i, i > 1, i * 10) == [20, 30]",
        s.clone()
    ));
    assert!(must_bool("self.m.all(k, k in ['a', 'b'])", s.clone()));
    assert!(must_bool("has(self.name) && !has(self.other)", s.clone()));
    assert!(must_bool(
        "self.items.all(i, self.items.exists(j, j == i))",
        s
    ));
}

#[test]
fn strings_lists_regex() {
    let s = json!({"s": "Hello-World", "l": ["b", "a"]});
    assert!(must_bool(
        "self.s.startsWith('Hello') && self.s.endsWith('World') && self.s.contains('-')",
        s.clone()
    ));
    assert!(must_bool(
        "self.s.matches('^[A-Z][a-z]+-') && !self.s.matches('^x')",
        s.clone()
    ));
    assert!(must_bool(
        "self.s.lowerAscii() == 'hello-world' && self.s.upperAscii() == 'HELLO-WORLD'",
        s.clone()
    ));
    assert!(must_bool(
        "self.s.split('-') == ['Hello', 'World']",
        s.clone()
    ));
    assert!(must_bool(
        "self.s.replace('o', '0') == 'Hell0-W0rld'",
        s.clone()
    ));
    assert!(must_bool(
        "self.s.substring(0, 5) == 'Hello' && self.s.indexOf('W') == 6",
        s.clone()
    ));
    assert!(must_bool(
        "self.s.size() == 11 && size(self.l) == 2",
        s.clone()
    ));
    assert!(must_bool(
        "self.l.join(',') == 'b,a' && !self.l.isSorted() && ['a','b'].isSorted()",
        s.clone()
    ));
    assert!(must_bool(
        "[3, 1, 2].min() == 1 && [3, 1, 2].max() == 3 && [1, 2].sum() == 3",
        s.clone()
    ));
    assert!(must_bool(
        "self.s.find('[A-Z]') == 'H' && self.s.findAll('[A-Z]') == ['H', 'W']",
        s.clone()
    ));
    assert!(must_bool(
        "' x '.trim() == 'x' && 'abc'.charAt(1) == 'b'",
        s
    ));
}

#[test]
fn kubernetes_libraries() {
    let t = json!({});
    assert!(must_bool(
        "quantity('1Gi').isGreaterThan(quantity('1000Mi'))",
        t.clone()
    ));
    assert!(must_bool(
        "quantity('500m').isLessThan(quantity('1'))",
        t.clone()
    ));
    assert!(must_bool(
        "quantity('1.5').add(quantity('500m')) == quantity('2')",
        t.clone()
    ));
    assert!(must_bool(
        "quantity('2k').asInteger() == 2000 && !quantity('1.5').isInteger()",
        t.clone()
    ));
    assert!(must_bool(
        "isQuantity('10Mi') && !isQuantity('ten')",
        t.clone()
    ));
    assert!(must_bool(
        "ip('10.0.0.1').family() == 4 && ip('::1').isLoopback()",
        t.clone()
    ));
    assert!(must_bool(
        "cidr('10.0.0.0/8').containsIP(ip('10.1.2.3')) && !cidr('10.0.0.0/8').containsIP('11.0.0.1')",
        t.clone()
    ));
    assert!(must_bool(
        "cidr('10.0.0.0/8').containsCIDR('10.1.0.0/16') && cidr('10.1.2.3/8').masked() == cidr('10.0.0.0/8')",
        t.clone()
    ));
    assert!(must_bool(
        "isIP('1.2.3.4') && !isIP('1.2.3') && isCIDR('::/0') && !isCIDR('1.2.3.4/33')",
        t.clone()
    ));
    assert!(must_bool(
        "url('https://example.com:8443/a/b?x=1').getHost() == 'example.com:8443'",
        t.clone()
    ));
    assert!(must_bool(
        "url('https://example.com:8443/a').getPort() == '8443' && url('https://e.com/a').getEscapedPath() == '/a'",
        t.clone()
    ));
    assert!(must_bool(
        "isURL('https://x.io') && !isURL('not a url')",
        t.clone()
    ));
    assert!(must_bool(
        "!format.dns1123Label().validate('ok-name').hasValue()",
        t.clone()
    ));
    assert!(must_bool(
        "format.dns1123Label().validate('Not_OK').hasValue()",
        t.clone()
    ));
    assert!(must_bool(
        "duration('1h30m') == duration('90m') && duration('1s') < duration('2s')",
        t.clone()
    ));
    assert!(must_bool(
        "timestamp('2024-01-01T00:00:00Z') < timestamp('2024-01-02T00:00:00Z')",
        t.clone()
    ));
    assert!(must_bool(
        "optional.of(1).orValue(2) == 1 && optional.none().orValue(2) == 2",
        t.clone()
    ));
    assert!(must_bool("self.?missing.orValue('d') == 'd'", t));
}

#[test]
fn compile_errors() {
    let vars = vec![("self".to_string(), TypeDesc::Dyn)];
    let e = Program::compile("self.a ==", &vars)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("compilation failed: ERROR: <input>:1:1: Syntax error"),
        "{e}"
    );
    let e = Program::compile("foo == 1", &vars).unwrap_err().to_string();
    assert!(e.contains("undeclared reference to 'foo'"), "{e}");
    let e = Program::compile("self.bogusFn()", &vars)
        .unwrap_err()
        .to_string();
    assert!(e.contains("undeclared reference to 'bogusFn'"), "{e}");
    let e = Program::compile("self.matches('(')", &vars)
        .unwrap_err()
        .to_string();
    assert!(e.contains("invalid regex"), "{e}");
    // Hostile nesting is refused, not a stack overflow.
    let deep = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
    assert!(
        Program::compile(&deep, &vars)
            .unwrap_err()
            .to_string()
            .contains("recursion limit")
    );
    let big = "1 + ".repeat(60_000) + "1";
    assert!(Program::compile(&big, &vars).is_err());
    // A long flat chain builds a deep tree without deep parser recursion: refused by depth.
    let chain = "self.a + ".repeat(10_000) + "1";
    let e = Program::compile(&chain, &vars).unwrap_err().to_string();
    assert!(e.contains("expression nesting exceeds limit 500"), "{e}");
    // A chain of 300 conditions is fine and evaluates.
    let conds = vec!["1 == 1"; 300].join(" && ");
    let p = Program::compile(&conds, &vars).expect("300 conditions");
    assert!(matches!(
        p.eval(&Activation::new(), 1_000_000),
        Ok((Value::Bool(true), _))
    ));
}

#[test]
fn runtime_cost_limit_stops_hostile_expressions() {
    let vars = vec![("self".to_string(), TypeDesc::Dyn)];
    let items: Vec<i64> = (0..2000).collect();
    let p = Program::compile(
        "self.all(a, self.all(b, self.all(c, a + b + c >= 0)))",
        &vars,
    )
    .expect("compiles");
    let mut act = Activation::new();
    act.bind("self", Value::from_json(&json!(items)));
    let start = std::time::Instant::now();
    let r = p.eval(&act, 1_000_000);
    assert!(matches!(r, Err(EvalError::CostLimitExceeded)), "{r:?}");
    assert!(start.elapsed() < std::time::Duration::from_secs(2));
    // The same expression within budget on a small input.
    act.bind("self", Value::from_json(&json!([1, 2, 3])));
    let (v, cost) = p.eval(&act, 1_000_000).expect("small input");
    assert!(matches!(v, Value::Bool(true)));
    assert!(cost > 27, "cost {cost}");
}

#[test]
fn static_cost_uses_declared_bounds() {
    let bounded = TypeDesc::List {
        elem: std::sync::Arc::new(TypeDesc::String { max_len: 10 }),
        max_items: 10,
    };
    let unbounded = TypeDesc::List {
        elem: std::sync::Arc::new(TypeDesc::String { max_len: MAX_SIZE }),
        max_items: MAX_SIZE / 3,
    };
    let src = "self.all(x, self.exists(y, x.contains(y)))";
    let small = Program::compile(src, &[("self".into(), bounded)])
        .expect("compiles")
        .estimated_cost();
    let huge = Program::compile(src, &[("self".into(), unbounded)])
        .expect("compiles")
        .estimated_cost();
    assert!(small < 1000, "{small}");
    assert!(huge > 10_000_000_000, "{huge}");
}

#[test]
fn message_construction_needs_a_declared_type_and_builds_a_map() {
    let vars = vec![
        ("object".to_string(), TypeDesc::Dyn),
        ("Object".to_string(), TypeDesc::Dyn),
    ];
    let src = "Object{metadata: Object.metadata{labels: {'env': object.x}}, spec: Object.spec{replicas: 2,}}";
    let p = Program::compile(src, &vars).expect("compiles");
    let mut act = Activation::new();
    act.bind("object", Value::from_json(&json!({"x": "prod"})));
    let (v, cost) = p.eval(&act, 1_000_000).expect("evaluates");
    assert_eq!(
        v.to_json(),
        json!({"metadata": {"labels": {"env": "prod"}}, "spec": {"replicas": 2}})
    );
    // Three structs (40 each) and one map literal (30), plus selects.
    assert!(cost >= 150, "cost {cost}");
    // Without the declaration the type is unknown, as in cel-go.
    let e = Program::compile("Object{spec: 1}", &[]).expect_err("undeclared");
    assert!(
        e.to_string().contains("undeclared reference to 'Object'"),
        "{e}"
    );
    // A map literal after an identifier is still a syntax error elsewhere.
    assert!(Program::compile("Object.spec{1: 2}", &vars).is_err());
    // A select followed by something else is an ordinary select.
    assert!(Program::compile("object.x == 'a'", &vars).is_ok());
    // Depth stays bounded for nested initializers.
    let deep = "Object{a: ".repeat(300) + "1" + &"}".repeat(300);
    assert!(Program::compile(&deep, &vars).is_err());
}

#[test]
fn jsonpatch_escape_key() {
    assert!(must_bool(
        "jsonpatch.escapeKey('example.com/a~b') == 'example.com~1a~0b'",
        json!({})
    ));
}
