//! The leaderboard's rules, each both ways, on a hand-made table.

use serde_json::{json, Value};

use super::*;

fn functions() -> Vec<Function> {
    Function::list_from_json(&json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
                "note": {"type": ["string", "null"]}
            },
            "required": ["city"]}}},
        {"type": "function", "function": {"name": "convert", "parameters": {
            "type": "object",
            "properties": {
                "amount": {"type": "number"},
                "from": {"type": "string"},
                "to": {"type": "string"}
            },
            "required": ["amount", "from", "to"]}}},
        // The leaderboard's own form and type names.
        {"name": "book", "parameters": {
            "type": "dict",
            "properties": {
                "guests": {"type": "integer"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "scores": {"type": "array", "items": {"type": "float"}},
                "options": {"type": "dict"},
                "rooms": {"type": "array", "items": {"type": "dict"}},
                "vip": {"type": "boolean"}
            },
            "required": ["guests"]}}
    ]))
    .unwrap()
}

/// `[["name", {args}], ...]` as calls, `{"text": ...}` as text, `{"malformed": ...}`.
fn answer(v: Value) -> Answer {
    match v {
        Value::Array(calls) => Answer::Calls(
            calls
                .into_iter()
                .map(|c| Call::new(c[0].as_str().unwrap(), c[1].clone()))
                .collect(),
        ),
        Value::Object(o) if o.contains_key("text") => Answer::Text(o["text"].to_string()),
        Value::Object(o) => Answer::Malformed(o["malformed"].to_string()),
        _ => unreachable!(),
    }
}

/// `"none"` or the leaderboard's list of `{"function": {"argument": [acceptable]}}`.
fn expected(v: Value) -> Expected {
    match v {
        Value::String(s) if s == "none" => Expected::NoCall,
        Value::Array(calls) => Expected::Calls(
            calls
                .iter()
                .map(|c| ExpectedCall::from_bfcl(c).unwrap())
                .collect(),
        ),
        _ => unreachable!(),
    }
}

/// `Ok(())` to pass, `Err((kind, argument))` for the first problem it must report.
type Want = Result<(), (&'static str, Option<&'static str>)>;

const PASS: Want = Ok(());

fn fail(kind: &'static str, argument: Option<&'static str>) -> Want {
    Err((kind, argument))
}

fn weather(city: Value) -> Value {
    json!([{"get_weather": {"city": city, "unit": ["", "celsius"]}}])
}

fn table() -> Vec<(&'static str, Value, Value, Want)> {
    let paris = weather(json!(["Paris"]));
    vec![
        // The function name.
        (
            "exact call",
            json!([["get_weather", {"city": "Paris"}]]),
            paris.clone(),
            PASS,
        ),
        (
            "wrong function",
            json!([["convert", {"city": "Paris"}]]),
            paris.clone(),
            fail("wrong_function", None),
        ),
        // Required arguments.
        (
            "required missing",
            json!([["get_weather", {"unit": "celsius"}]]),
            paris.clone(),
            fail("missing_required", Some("city")),
        ),
        (
            "required missing though the truth allows \"\"",
            json!([["get_weather", {}]]),
            weather(json!(["Paris", ""])),
            fail("missing_required", Some("city")),
        ),
        // Arguments the schema or the truth does not have.
        (
            "argument not in the schema",
            json!([["get_weather", {"city": "Paris", "country": "FR"}]]),
            paris.clone(),
            fail("undefined_argument", Some("country")),
        ),
        (
            "argument the truth does not list",
            json!([["get_weather", {"city": "Paris", "days": 3}]]),
            paris.clone(),
            fail("unexpected_argument", Some("days")),
        ),
        // Optional arguments.
        (
            "optional absent, truth allows \"\"",
            json!([["get_weather", {"city": "Paris"}]]),
            paris.clone(),
            PASS,
        ),
        (
            "optional given, one of its values",
            json!([["get_weather", {"city": "Paris", "unit": "celsius"}]]),
            paris.clone(),
            PASS,
        ),
        (
            "optional absent, truth requires it",
            json!([["get_weather", {"city": "Paris"}]]),
            json!([{"get_weather": {"city": ["Paris"], "unit": ["celsius"]}}]),
            fail("missing_optional", Some("unit")),
        ),
        // Strings.
        (
            "string: case and punctuation",
            json!([["get_weather", {"city": "NEW YORK, N.Y."}]]),
            weather(json!(["new york ny"])),
            PASS,
        ),
        (
            "string: -_/*^ dropped",
            json!([["get_weather", {"city": "san-francisco_ca/*^"}]]),
            weather(json!(["San Francisco CA"])),
            PASS,
        ),
        (
            "string: quotes",
            json!([["get_weather", {"city": "'Paris'"}]]),
            weather(json!(["\"Paris\""])),
            PASS,
        ),
        (
            "string: one of several",
            json!([["get_weather", {"city": "Paris, France"}]]),
            weather(json!(["Paris", "Paris, France"])),
            PASS,
        ),
        (
            "string: other value",
            json!([["get_weather", {"city": "Lyon"}]]),
            paris.clone(),
            fail("wrong_value", Some("city")),
        ),
        (
            "string: letters are not dropped",
            json!([["get_weather", {"city": "Pariss"}]]),
            paris.clone(),
            fail("wrong_value", Some("city")),
        ),
        (
            "string: enum value, any case",
            json!([["get_weather", {"city": "Paris", "unit": "CELSIUS"}]]),
            paris.clone(),
            PASS,
        ),
        (
            "string: enum, other value",
            json!([["get_weather", {"city": "Paris", "unit": "fahrenheit"}]]),
            paris.clone(),
            fail("wrong_value", Some("unit")),
        ),
        // Types.
        (
            "an integer for a number",
            json!([["convert", {"amount": 100, "from": "EUR", "to": "USD"}]]),
            json!([{"convert": {"amount": [100.0], "from": ["EUR"], "to": ["USD"]}}]),
            PASS,
        ),
        (
            "a float for an integer",
            json!([["get_weather", {"city": "Paris", "days": 3.0}]]),
            json!([{"get_weather": {"city": ["Paris"], "days": [3]}}]),
            fail("wrong_type", Some("days")),
        ),
        (
            "a string for an integer",
            json!([["get_weather", {"city": "Paris", "days": "3"}]]),
            json!([{"get_weather": {"city": ["Paris"], "days": [3]}}]),
            fail("wrong_type", Some("days")),
        ),
        (
            "a number for a string",
            json!([["get_weather", {"city": 75001}]]),
            paris.clone(),
            fail("wrong_type", Some("city")),
        ),
        (
            "a boolean for an integer",
            json!([["book", {"guests": true}]]),
            json!([{"book": {"guests": [1]}}]),
            fail("wrong_type", Some("guests")),
        ),
        (
            "null where the type allows it",
            json!([["get_weather", {"city": "Paris", "note": null}]]),
            json!([{"get_weather": {"city": ["Paris"], "note": [null, ""]}}]),
            PASS,
        ),
        (
            "null where it does not",
            json!([["get_weather", {"city": null}]]),
            paris.clone(),
            fail("wrong_type", Some("city")),
        ),
        // Other values: by value.
        (
            "integer equal",
            json!([["get_weather", {"city": "Paris", "days": 3}]]),
            json!([{"get_weather": {"city": ["Paris"], "days": [3, 4]}}]),
            PASS,
        ),
        (
            "number other value",
            json!([["convert", {"amount": 99.5, "from": "EUR", "to": "USD"}]]),
            json!([{"convert": {"amount": [100], "from": ["EUR"], "to": ["USD"]}}]),
            fail("wrong_value", Some("amount")),
        ),
        (
            "boolean equal",
            json!([["book", {"guests": 2, "vip": true}]]),
            json!([{"book": {"guests": [2], "vip": [true]}}]),
            PASS,
        ),
        (
            "boolean other value",
            json!([["book", {"guests": 2, "vip": false}]]),
            json!([{"book": {"guests": [2], "vip": [true]}}]),
            fail("wrong_value", Some("vip")),
        ),
        // Lists.
        (
            "list in order, strings standardised",
            json!([["book", {"guests": 2, "tags": ["Sea View", "quiet"]}]]),
            json!([{"book": {"guests": [2], "tags": [["sea view", "QUIET"]]}}]),
            PASS,
        ),
        (
            "list in another order",
            json!([["book", {"guests": 2, "tags": ["quiet", "sea view"]}]]),
            json!([{"book": {"guests": [2], "tags": [["sea view", "quiet"]]}}]),
            fail("wrong_value", Some("tags")),
        ),
        (
            "list with an item missing",
            json!([["book", {"guests": 2, "tags": ["sea view"]}]]),
            json!([{"book": {"guests": [2], "tags": [["sea view", "quiet"]]}}]),
            fail("wrong_value", Some("tags")),
        ),
        (
            "list items of the wrong type",
            json!([["book", {"guests": 2, "tags": [1, 2]}]]),
            json!([{"book": {"guests": [2], "tags": [["1", "2"]]}}]),
            fail("wrong_type", Some("tags")),
        ),
        (
            "integers in a list of floats",
            json!([["book", {"guests": 2, "scores": [1, 2.5]}]]),
            json!([{"book": {"guests": [2], "scores": [[1.0, 2.5]]}}]),
            PASS,
        ),
        (
            "one of two acceptable lists",
            json!([["book", {"guests": 2, "tags": ["b"]}]]),
            json!([{"book": {"guests": [2], "tags": [["a"], ["b"]]}}]),
            PASS,
        ),
        // Objects.
        (
            "object: values standardised, optional key left out",
            json!([["book", {"guests": 2, "options": {"breakfast": "Yes"}}]]),
            json!([{"book": {"guests": [2], "options": [{"breakfast": ["yes"], "late": ["", true]}]}}]),
            PASS,
        ),
        (
            "object: a key the truth does not have",
            json!([["book", {"guests": 2, "options": {"spa": true}}]]),
            json!([{"book": {"guests": [2], "options": [{"breakfast": ["", "yes"]}]}}]),
            fail("wrong_value", Some("options")),
        ),
        (
            "object: a needed key left out",
            json!([["book", {"guests": 2, "options": {}}]]),
            json!([{"book": {"guests": [2], "options": [{"breakfast": ["yes"]}]}}]),
            fail("wrong_value", Some("options")),
        ),
        (
            "object: a wrong value",
            json!([["book", {"guests": 2, "options": {"breakfast": "no"}}]]),
            json!([{"book": {"guests": [2], "options": [{"breakfast": ["yes"]}]}}]),
            fail("wrong_value", Some("options")),
        ),
        (
            "list of objects in order",
            json!([["book", {"guests": 2, "rooms": [{"beds": 2}, {"beds": 1}]}]]),
            json!([{"book": {"guests": [2], "rooms": [[{"beds": [2]}, {"beds": [1]}]]}}]),
            PASS,
        ),
        (
            "list of objects, one missing",
            json!([["book", {"guests": 2, "rooms": [{"beds": 2}]}]]),
            json!([{"book": {"guests": [2], "rooms": [[{"beds": [2]}, {"beds": [1]}]]}}]),
            fail("wrong_value", Some("rooms")),
        ),
        (
            "arguments not an object",
            json!([["get_weather", "city=Paris"]]),
            paris.clone(),
            fail("arguments_not_object", None),
        ),
        // Parallel calls: order-free, counts equal.
        (
            "parallel, other order",
            json!([["convert", {"amount": 5, "from": "EUR", "to": "USD"}], ["get_weather", {"city": "Paris"}]]),
            json!([{"get_weather": {"city": ["Paris"]}}, {"convert": {"amount": [5], "from": ["EUR"], "to": ["USD"]}}]),
            PASS,
        ),
        (
            "parallel, same function twice, other order",
            json!([["get_weather", {"city": "Oslo"}], ["get_weather", {"city": "Paris"}]]),
            json!([{"get_weather": {"city": ["Paris"]}}, {"get_weather": {"city": ["Oslo"]}}]),
            PASS,
        ),
        (
            "parallel, where a greedy pairing fails",
            json!([["get_weather", {"city": "Paris"}], ["get_weather", {"city": "London"}]]),
            json!([{"get_weather": {"city": ["Paris", "London"]}}, {"get_weather": {"city": ["Paris"]}}]),
            PASS,
        ),
        (
            "parallel, one call short",
            json!([["get_weather", {"city": "Paris"}]]),
            json!([{"get_weather": {"city": ["Paris"]}}, {"get_weather": {"city": ["Oslo"]}}]),
            fail("wrong_count", None),
        ),
        (
            "parallel, one call wrong",
            json!([["get_weather", {"city": "Paris"}], ["get_weather", {"city": "Rome"}]]),
            json!([{"get_weather": {"city": ["Paris"]}}, {"get_weather": {"city": ["Oslo"]}}]),
            fail("unmatched", None),
        ),
        (
            "two calls where one is expected",
            json!([["get_weather", {"city": "Paris"}], ["get_weather", {"city": "Paris"}]]),
            paris.clone(),
            fail("wrong_count", None),
        ),
        // No call expected (irrelevance), and calls expected but not made.
        (
            "no call expected, text",
            json!({"text": "I cannot help with that."}),
            json!("none"),
            PASS,
        ),
        (
            "no call expected, empty call list",
            json!([]),
            json!("none"),
            PASS,
        ),
        (
            "no call expected, output that is not a call",
            json!({"malformed": "{\"name\": "}),
            json!("none"),
            PASS,
        ),
        (
            "no call expected, a call",
            json!([["get_weather", {"city": "Paris"}]]),
            json!("none"),
            fail("called_when_no_call_expected", None),
        ),
        (
            "call expected, text",
            json!({"text": "It is sunny in Paris."}),
            paris.clone(),
            fail("no_call", None),
        ),
        (
            "call expected, malformed",
            json!({"malformed": "{\"name\": "}),
            paris.clone(),
            fail("malformed", None),
        ),
        (
            "the truth names a function not offered",
            json!([["get_time", {}]]),
            json!([{"get_time": {}}]),
            fail("unknown_function", None),
        ),
    ]
}

#[test]
fn the_leaderboard_rules_both_ways() {
    let functions = functions();
    let cases = table();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let (mut passes, mut fails) = (0, 0);
    let mut wrong = Vec::new();
    for (name, got, want, verdict) in cases {
        let r = check_case(&functions, &answer(got), &expected(want));
        assert_eq!(r.passed, r.problems.is_empty(), "{name}");
        let first = r.problems.first();
        let outcome = match first {
            None => Ok(()),
            Some(p) => Err((p.kind(), p.argument())),
        };
        if outcome != verdict {
            wrong.push(format!(
                "{name}: want {verdict:?}, got {outcome:?} ({})",
                r.reason()
            ));
        }
        if r.passed {
            passes += 1;
        } else {
            fails += 1;
            assert!(!r.reason().is_empty());
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
    assert!(passes >= 15 && fails >= 25, "{passes} pass, {fails} fail");
}

#[test]
fn every_problem_of_a_call_is_reported_with_its_argument() {
    let r = check_case(
        &functions(),
        &answer(json!([["convert", {"amount": "5", "from": "eur", "currency": "x"}]])),
        &expected(json!([{"convert": {"amount": [5], "from": ["EUR"], "to": ["USD"]}}])),
    );
    let kinds: Vec<(&str, Option<&str>)> = r
        .problems
        .iter()
        .map(|p| (p.kind(), p.argument()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("missing_required", Some("to")),
            ("wrong_type", Some("amount")),
            ("undefined_argument", Some("currency")),
        ]
    );
    assert!(
        r.reason()
            .contains("`convert`.`amount`: expected number, got \"5\""),
        "{}",
        r.reason()
    );
    let correct: Vec<(&str, bool)> = r
        .arguments
        .iter()
        .map(|a| (a.argument.as_str(), a.correct))
        .collect();
    assert_eq!(correct, [("amount", false), ("from", true), ("to", false)]);
}

#[test]
fn stats_per_tool_and_per_argument() {
    let f = functions();
    let paris = expected(weather(json!(["Paris"])));
    let results = [
        check_case(
            &f,
            &answer(json!([["get_weather", {"city": "Paris"}]])),
            &paris,
        ),
        check_case(
            &f,
            &answer(json!([["get_weather", {"city": "Rome"}]])),
            &paris,
        ),
        check_case(
            &f,
            &answer(json!([["get_weather", {"city": "Paris", "unit": "kelvin"}]])),
            &paris,
        ),
        check_case(&f, &answer(json!({"text": "no"})), &expected(json!("none"))),
        check_case(
            &f,
            &answer(json!([["convert", {"amount": 1, "from": "a", "to": "b"}]])),
            &expected(json!("none")),
        ),
    ];
    let s = ToolCallStats::from_results(&results);
    assert_eq!(
        s.overall,
        Rate {
            passed: 2,
            total: 5
        }
    );
    assert_eq!(
        s.per_tool["get_weather"],
        Rate {
            passed: 1,
            total: 3
        }
    );
    assert_eq!(
        s.per_tool[NO_CALL],
        Rate {
            passed: 1,
            total: 2
        }
    );
    let arg = |a: &str| {
        s.per_argument
            .iter()
            .find(|x| x.argument == a)
            .unwrap()
            .rate
    };
    assert_eq!(
        arg("city"),
        Rate {
            passed: 2,
            total: 3
        }
    );
    assert_eq!(
        arg("unit"),
        Rate {
            passed: 2,
            total: 3
        }
    );
    assert_eq!(s.problems["wrong_value"], 2);
    assert_eq!(s.problems["called_when_no_call_expected"], 1);
    assert!((s.per_tool["get_weather"].accuracy() - 1.0 / 3.0).abs() < 1e-12);
    // Reports serialise it as it is.
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["per_argument"][0]["rate"]["total"], 3);
}

#[test]
fn truth_calls_become_exact_expectations() {
    let call = Call::new("get_weather", json!({"city": "Paris", "days": 2}));
    let e = ExpectedCall::exact(&call);
    assert_eq!(e.arguments["days"], json!([2]));
    let f = functions();
    let r = check_case(
        &f,
        &Answer::Calls(vec![call]),
        &Expected::Calls(vec![e.clone()]),
    );
    assert!(r.passed, "{}", r.reason());
    let r = check_case(
        &f,
        &answer(json!([["get_weather", {"city": "paris"}]])),
        &Expected::Calls(vec![e]),
    );
    assert_eq!(r.problems[0].kind(), "missing_optional");
    // Objects and lists of objects: the true call passes, a changed inner value fails.
    let nested = Call::new(
        "book",
        json!({"guests": 2, "options": {"view": "sea", "late": true},
            "rooms": [{"beds": 2, "type": "Double"}]}),
    );
    let e = ExpectedCall::exact(&nested);
    let r = check_case(
        &f,
        &Answer::Calls(vec![nested.clone()]),
        &Expected::Calls(vec![e.clone()]),
    );
    assert!(r.passed, "{}", r.reason());
    for (key, wrong) in [
        ("options", json!({"view": "sea", "late": false})),
        ("options", json!({"view": "sea"})),
        ("rooms", json!([{"beds": 1, "type": "Double"}])),
    ] {
        let mut args = nested.arguments.clone();
        args[key] = wrong;
        let r = check_case(
            &f,
            &Answer::Calls(vec![Call::new("book", args)]),
            &Expected::Calls(vec![e.clone()]),
        );
        assert!(!r.passed, "{key}");
    }
    assert!(ExpectedCall::from_bfcl(&json!({"a": {"x": 1}})).is_err());
    assert!(ExpectedCall::from_bfcl(&json!({"a": {}, "b": {}})).is_err());
    assert_eq!(standardize("April 1, 2024"), standardize("april 1 2024"));
}
