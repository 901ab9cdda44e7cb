//! Function-calling data for a team that has only its tool list: requests in many phrasings
//! with the calls that answer them, and requests no listed tool fits.
//!
//! Each record is a line of OpenAI's chat format with its tools, as smolt's tool tasks read it:
//! `{"tools": [...], "messages": [{"role": "user", ...}, {"role": "assistant", "tool_calls":
//! [...]}]}`, or with a text answer where no tool fits. How a record is made:
//! - **arguments** are sampled from the tool's JSON Schema: every required parameter, each
//!   optional one half of the time; enums pick a member, integers and numbers fall within
//!   `minimum`/`maximum`, arrays within `minItems`/`maxItems`, objects recurse, a schema's
//!   `examples` or `default` is used some of the time; strings come from word pools chosen by
//!   the parameter's name (city, date, email, ...) or `format` (`date`, `time`, `date-time`,
//!   `email`, written as RFC 3339 has them, as the decoding constraint enforces). A string
//!   `pattern` without `examples` or `enum` cannot be sampled and is refused by name.
//! - **the request** says what the tool's description says (else its name) and each argument's
//!   value, through many templates: openers, argument order, how a value is introduced.
//! - **distractors**: the record lists the target with a random subset of the other tools, in
//!   a random order.
//! - **no-call requests** (a share `no_call`): either a request outside every tool, or a
//!   request for a tool that the record's list leaves out; the answer is a polite text.
//!
//! The same tool list, options and seed give identical records.

use std::collections::HashSet;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

/// What to generate.
#[derive(Clone, Debug)]
pub struct ToolSynthConfig {
    /// Records to make (all distinct requests).
    pub n: usize,
    pub seed: u64,
    /// Share of requests that no listed tool fits.
    pub no_call: f64,
}

impl Default for ToolSynthConfig {
    fn default() -> Self {
        ToolSynthConfig {
            n: 500,
            seed: 0,
            no_call: 0.15,
        }
    }
}

/// A small built-in tool set for demos: smart home, calendar and shop, with enums, integers,
/// numbers, booleans, a nested object and an array among their parameters.
pub fn builtin_tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "set_light",
            "description": "Turn a light on or off, optionally setting its brightness",
            "parameters": {"type": "object", "properties": {
                "room": {"type": "string", "enum": ["kitchen", "living room", "bedroom", "bathroom", "hallway", "office"]},
                "on": {"type": "boolean"},
                "brightness": {"type": "integer", "minimum": 1, "maximum": 100}},
                "required": ["room", "on"]}}},
        {"type": "function", "function": {"name": "set_thermostat",
            "description": "Set the target temperature of the heating",
            "parameters": {"type": "object", "properties": {
                "temperature": {"type": "number", "minimum": 10, "maximum": 30},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "zone": {"type": "string", "enum": ["upstairs", "downstairs"]}},
                "required": ["temperature"]}}},
        {"type": "function", "function": {"name": "create_event",
            "description": "Add an event to the calendar",
            "parameters": {"type": "object", "properties": {
                "title": {"type": "string"},
                "date": {"type": "string", "format": "date"},
                "time": {"type": "string", "description": "24-hour clock, HH:MM"},
                "duration_minutes": {"type": "integer", "minimum": 15, "maximum": 240},
                "attendees": {"type": "array", "items": {"type": "string", "format": "email"}, "maxItems": 3}},
                "required": ["title", "date"]}}},
        {"type": "function", "function": {"name": "search_products",
            "description": "Search the shop for products",
            "parameters": {"type": "object", "properties": {
                "query": {"type": "string"},
                "max_price": {"type": "number", "minimum": 1, "maximum": 500},
                "category": {"type": "string", "enum": ["electronics", "books", "clothing", "garden", "toys"]},
                "in_stock_only": {"type": "boolean"}},
                "required": ["query"]}}},
        {"type": "function", "function": {"name": "add_to_cart",
            "description": "Put a product in the shopping cart",
            "parameters": {"type": "object", "properties": {
                "product_id": {"type": "string", "examples": ["SKU-1042", "SKU-2210", "SKU-3381", "SKU-4007", "SKU-5126"]},
                "quantity": {"type": "integer", "minimum": 1, "maximum": 10},
                "gift_wrap": {"type": "object", "properties": {
                    "enabled": {"type": "boolean"},
                    "message": {"type": "string"}}, "required": ["enabled"]}},
                "required": ["product_id", "quantity"]}}},
        {"type": "function", "function": {"name": "set_timer",
            "description": "Start a countdown timer",
            "parameters": {"type": "object", "properties": {
                "minutes": {"type": "integer", "minimum": 1, "maximum": 180},
                "label": {"type": "string"}},
                "required": ["minutes"]}}}
    ])
}

/// A tool as the generator reads it.
struct Tool {
    name: String,
    description: Option<String>,
    parameters: Value,
    openai: Value,
}

/// A tool in OpenAI's form, `{"type": "function", "function": {name, description?,
/// parameters}}`: the one shape every tool list smolt writes takes (a description that is not a
/// string is left out).
pub(crate) fn openai_tool(name: &str, description: Option<&Value>, parameters: Value) -> Value {
    let mut f = Map::new();
    f.insert("name".into(), json!(name));
    if let Some(d) = description.filter(|d| d.is_string()) {
        f.insert("description".into(), d.clone());
    }
    f.insert("parameters".into(), parameters);
    json!({"type": "function", "function": f})
}

fn read_tools(tools: &Value) -> Result<Vec<Tool>, String> {
    let items = tools
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or("the tool list must be a non-empty JSON array of {\"type\": \"function\", \"function\": {...}} objects")?;
    items
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let f = t.get("function").unwrap_or(t);
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("tools[{i}] has no string \"name\""))?;
            let parameters = f
                .get("parameters")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            let openai = openai_tool(name, f.get("description"), parameters.clone());
            Ok(Tool {
                name: name.to_string(),
                description: f
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                parameters,
                openai,
            })
        })
        .collect()
}

/// Generates `cfg.n` records (JSON objects, one data line each) from an OpenAI tool list.
/// Every parameter must be one the generator can sample (see the module's documentation);
/// the error names the tool and parameter otherwise.
pub fn synth_tool_records(tools: &Value, cfg: &ToolSynthConfig) -> Result<Vec<Value>, String> {
    let tools = read_tools(tools)?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    // Check every schema up front, so a bad one fails before anything is written.
    for t in &tools {
        sample_object(&t.parameters, &mut rng, &t.name, 1.0)?;
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(cfg.n);
    let mut tries = 0;
    while out.len() < cfg.n {
        tries += 1;
        if tries > 50 * cfg.n + 1000 {
            return Err(format!(
                "only {} distinct requests could be made from these tools; ask for fewer (--n)",
                out.len()
            ));
        }
        let record = if rng.gen_bool(cfg.no_call.clamp(0.0, 1.0)) {
            no_call_record(&tools, &mut rng)?
        } else {
            call_record(&tools, &mut rng)?
        };
        let request = record["messages"][0]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if seen.insert(request) {
            out.push(record);
        }
    }
    Ok(out)
}

/// The target first to be sure it is listed, then other tools; shuffled.
fn tool_list(tools: &[Tool], target: Option<usize>, rng: &mut ChaCha8Rng) -> Vec<Value> {
    let others: Vec<usize> = (0..tools.len()).filter(|&i| Some(i) != target).collect();
    let k = if others.is_empty() {
        0
    } else {
        rng.gen_range(usize::from(target.is_none())..=others.len())
    };
    let mut chosen: Vec<usize> = others.choose_multiple(rng, k).copied().collect();
    chosen.extend(target);
    chosen.shuffle(rng);
    chosen.iter().map(|&i| tools[i].openai.clone()).collect()
}

fn call_record(tools: &[Tool], rng: &mut ChaCha8Rng) -> Result<Value, String> {
    let i = rng.gen_range(0..tools.len());
    let t = &tools[i];
    let args = sample_object(&t.parameters, rng, &t.name, 0.5)?;
    let request = phrase_request(t, &args, rng);
    Ok(json!({
        "tools": tool_list(tools, Some(i), rng),
        "messages": [
            {"role": "user", "content": request},
            {"role": "assistant", "tool_calls": [{"id": "call_0", "type": "function",
                "function": {"name": t.name, "arguments": Value::Object(args).to_string()}}]}
        ]
    }))
}

const OUTSIDE: &[&str] = &[
    "Tell me a joke about penguins",
    "What is the capital of Australia?",
    "Translate 'good morning' into Italian",
    "Write a haiku about autumn",
    "How many legs does a spider have?",
    "Who wrote Pride and Prejudice?",
    "Summarise the plot of Hamlet in one sentence",
    "What's 17 times 23?",
    "Give me a synonym for happy",
    "Why is the sky blue?",
    "Recommend a good book about space",
    "How do I boil an egg?",
    "What does HTTP stand for?",
    "Thanks, that's all for now",
    "Hello! How are you today?",
    "Explain what a prime number is",
    "What's the difference between a lake and a pond?",
    "Can you tell me a fun fact?",
    "Spell 'necessary' backwards",
    "What year did the first moon landing happen?",
];

const DECLINE: &[&str] = &[
    "Sorry, none of my tools can do that.",
    "I can't help with that using the tools I have.",
    "That is not something my tools can do, sorry.",
    "I don't have a tool for that request.",
];

fn no_call_record(tools: &[Tool], rng: &mut ChaCha8Rng) -> Result<Value, String> {
    // Half the time a request for a tool the list leaves out: the harder irrelevance case.
    let (request, list) = if tools.len() > 1 && rng.gen_bool(0.5) {
        let i = rng.gen_range(0..tools.len());
        let t = &tools[i];
        let args = sample_object(&t.parameters, rng, &t.name, 0.5)?;
        (phrase_request(t, &args, rng), {
            let mut l = tool_list(tools, None, rng);
            l.retain(|v| v["function"]["name"] != json!(t.name));
            if l.is_empty() {
                let j = (i + 1) % tools.len();
                l.push(tools[j].openai.clone());
            }
            l
        })
    } else {
        let base = OUTSIDE[rng.gen_range(0..OUTSIDE.len())];
        let opener = ["", "Hey, ", "Quick question: ", "Please: "][rng.gen_range(0..4)];
        (format!("{opener}{base}"), tool_list(tools, None, rng))
    };
    Ok(json!({
        "tools": list,
        "messages": [
            {"role": "user", "content": request},
            {"role": "assistant", "content": DECLINE[rng.gen_range(0..DECLINE.len())]}
        ]
    }))
}

/// `snake_case` or `camelCase` → words.
fn words(name: &str) -> String {
    let mut s = String::new();
    for (i, c) in name.chars().enumerate() {
        if c == '_' || c == '-' || c == '.' {
            s.push(' ');
        } else if c.is_uppercase() && i > 0 {
            s.push(' ');
            s.extend(c.to_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}

fn value_text(v: &Value, rng: &mut ChaCha8Rng) -> String {
    match v {
        Value::String(s) => {
            if s.contains(' ') && rng.gen_bool(0.5) {
                format!("\"{s}\"")
            } else {
                s.clone()
            }
        }
        Value::Bool(b) => {
            let (yes, no) = [("yes", "no"), ("true", "false")][rng.gen_range(0..2)];
            (if *b { yes } else { no }).to_string()
        }
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(|i| value_text(i, rng)).collect();
            match parts.len() {
                0 => "none".into(),
                1 => parts[0].clone(),
                _ => format!(
                    "{} and {}",
                    parts[..parts.len() - 1].join(", "),
                    parts[parts.len() - 1]
                ),
            }
        }
        Value::Object(o) => {
            let parts: Vec<String> = o
                .iter()
                .map(|(k, v)| match v {
                    Value::Bool(b) => bool_phrase(&words(k), *b, rng),
                    _ => format!("{} {}", words(k), value_text(v, rng)),
                })
                .collect();
            format!("({})", parts.join(", "))
        }
        other => other.to_string(),
    }
}

/// Parameter names that are themselves a state (`on`, `enabled`): their value reads as the
/// state, not as "on: yes".
const STATE_WORDS: &[&str] = &["on", "enabled", "active", "visible", "muted", "locked"];

/// A boolean argument in words that a person would use, and that cannot be misread:
/// `on` true is "switched on", not "on on"; `in_stock_only` false is "in stock only: no" or
/// "without in stock only", never a bare "off".
fn bool_phrase(name: &str, b: bool, rng: &mut ChaCha8Rng) -> String {
    if STATE_WORDS.contains(&name) {
        let (yes, no) = match name {
            "on" => (
                ["switched on", "turned on", "on"],
                ["switched off", "turned off", "off"],
            ),
            _ => (
                ["set to true", "= true", "true"],
                ["set to false", "= false", "false"],
            ),
        };
        let v = if b { yes } else { no }[rng.gen_range(0..3)];
        return if name == "on" {
            v.to_string()
        } else {
            format!("{name} {v}")
        };
    }
    match (b, rng.gen_range(0..4)) {
        (true, 0) => format!("with {name}"),
        (false, 0) => format!("without {name}"),
        (_, 1) => format!("{name}: {}", if b { "yes" } else { "no" }),
        (_, 2) => format!("{name} set to {b}"),
        _ => format!("{name} = {b}"),
    }
}

fn phrase_request(t: &Tool, args: &Map<String, Value>, rng: &mut ChaCha8Rng) -> String {
    let what = match &t.description {
        Some(d) if !d.trim().is_empty() => {
            let d = d.trim().trim_end_matches('.');
            let mut c = d.chars();
            let first = c.next().map(|f| f.to_lowercase().collect::<String>());
            first.unwrap_or_default() + c.as_str()
        }
        _ => words(&t.name),
    };
    let opener = [
        "",
        "Please ",
        "Could you ",
        "Can you ",
        "I need you to ",
        "Hey, ",
        "Go ahead and ",
        "I'd like you to ",
        "Quickly ",
        "Would you ",
    ][rng.gen_range(0..10)];
    let mut keys: Vec<&String> = args.keys().collect();
    keys.shuffle(rng);
    let style = rng.gen_range(0..5);
    let parts: Vec<String> = keys
        .iter()
        .map(|k| {
            let name = words(k);
            if let Value::Bool(b) = args[*k] {
                return bool_phrase(&name, b, rng);
            }
            let v = value_text(&args[*k], rng);
            match (style + rng.gen_range(0..2)) % 5 {
                0 => format!("{name} {v}"),
                1 => format!("{name}: {v}"),
                2 => format!("{v} for the {name}"),
                3 => format!("{name} set to {v}"),
                _ => format!("with {name} {v}"),
            }
        })
        .collect();
    let body = if parts.is_empty() {
        what
    } else {
        let join = [", ", "; ", " and ", ", "][rng.gen_range(0..4)];
        let lead = [" — ", ": ", ", ", " with "][rng.gen_range(0..4)];
        let mut body = parts.join(join);
        // " with " then "with temperature 27" would read "with with".
        if lead == " with " {
            if let Some(rest) = body.strip_prefix("with ") {
                body = rest.to_string();
            }
        }
        format!("{what}{lead}{body}")
    };
    let end = ["", ".", "?", " please", ", thanks"][rng.gen_range(0..5)];
    let text = format!("{opener}{body}{end}");
    let mut c = text.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

const CITIES: &[&str] = &[
    "Paris", "Oslo", "Tokyo", "Lima", "Nairobi", "Toronto", "Berlin", "Madrid", "Seoul", "Austin",
    "Lyon", "Porto", "Dublin", "Cairo", "Perth",
];
const NAMES: &[&str] = &[
    "Alice", "Bob", "Chen", "Dana", "Emeka", "Fatima", "Greta", "Hiro", "Ines", "Jonas", "Kofi",
    "Lena",
];
const THINGS: &[&str] = &[
    "team standup",
    "dentist appointment",
    "wireless headphones",
    "garden hose",
    "birthday party",
    "project review",
    "running shoes",
    "coffee beans",
    "yoga class",
    "board games",
    "lunch with Sam",
    "tea kettle",
    "pasta",
    "desk lamp",
    "phone charger",
    "sci-fi novels",
    "winter jacket",
    "budget meeting",
    "flight check-in",
    "oven",
];

fn pick<'a>(pool: &[&'a str], rng: &mut ChaCha8Rng) -> &'a str {
    pool[rng.gen_range(0..pool.len())]
}

fn sample_string(schema: &Value, name: &str, rng: &mut ChaCha8Rng) -> Option<String> {
    let format = schema.get("format").and_then(Value::as_str).unwrap_or("");
    let date = |rng: &mut ChaCha8Rng| {
        format!(
            "2025-{:02}-{:02}",
            rng.gen_range(1..=12),
            rng.gen_range(1..=28)
        )
    };
    let time = |rng: &mut ChaCha8Rng| {
        format!(
            "{:02}:{:02}",
            rng.gen_range(7..=20),
            [0, 15, 30, 45][rng.gen_range(0..4)]
        )
    };
    let n = name.to_lowercase();
    let s = match format {
        "date" => date(rng),
        // JSON Schema's formats are RFC 3339's, which the decoding constraint enforces.
        "time" => format!("{}:00Z", time(rng)),
        "date-time" => format!("{}T{}:00Z", date(rng), time(rng)),
        "email" => format!("{}@example.com", pick(NAMES, rng).to_lowercase()),
        _ if schema.get("pattern").is_some() => return None,
        _ if n.contains("city") || n.contains("location") || n.contains("place") => {
            pick(CITIES, rng).to_string()
        }
        _ if n.contains("email") => format!("{}@example.com", pick(NAMES, rng).to_lowercase()),
        _ if n.contains("date") || n.contains("day") => date(rng),
        _ if n.contains("time") => time(rng),
        _ if n.contains("name") || n.contains("person") || n.contains("user") => {
            pick(NAMES, rng).to_string()
        }
        _ if n.contains("id") => format!("{}-{}", name.to_uppercase(), rng.gen_range(100..10000)),
        _ => pick(THINGS, rng).to_string(),
    };
    let max = schema
        .get("maxLength")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX) as usize;
    Some(s.chars().take(max).collect())
}

fn sample_value(
    schema: &Value,
    rng: &mut ChaCha8Rng,
    at: &str,
    optional_share: f64,
) -> Result<Value, String> {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        if let Some(v) = values.choose(rng) {
            return Ok(v.clone());
        }
    }
    if let Some(v) = schema.get("const") {
        return Ok(v.clone());
    }
    let examples: Vec<&Value> = schema
        .get("examples")
        .and_then(Value::as_array)
        .map(|e| e.iter().collect())
        .unwrap_or_default();
    if !examples.is_empty() && (schema.get("pattern").is_some() || rng.gen_bool(0.7)) {
        return Ok(examples[rng.gen_range(0..examples.len())].clone());
    }
    if let Some(d) = schema.get("default") {
        if rng.gen_bool(0.2) {
            return Ok(d.clone());
        }
    }
    let ty = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("string"),
        _ if schema.get("properties").is_some() => "object",
        _ => "string",
    };
    let name = at.rsplit('.').next().unwrap_or(at);
    let num = |key: &str| schema.get(key).and_then(Value::as_f64);
    Ok(match ty {
        "integer" => {
            let lo = num("minimum").map_or(1, |v| v.ceil() as i64);
            let hi = num("maximum").map_or(lo.max(0) + 99, |v| v.floor() as i64);
            if hi < lo {
                return Err(format!("{at}: minimum {lo} is above maximum {hi}"));
            }
            json!(rng.gen_range(lo..=hi))
        }
        "number" => {
            let lo = num("minimum").unwrap_or(0.0);
            let hi = num("maximum").unwrap_or(lo + 100.0);
            if hi < lo {
                return Err(format!("{at}: minimum {lo} is above maximum {hi}"));
            }
            // Whole and half values read naturally in a request and round-trip exactly.
            let steps = ((hi - lo) * 2.0).floor() as i64;
            let v = lo + rng.gen_range(0..=steps.max(0)) as f64 / 2.0;
            if v.fract() == 0.0 && v.abs() < 1e15 {
                json!(v as i64)
            } else {
                json!(v)
            }
        }
        "boolean" => json!(rng.gen_bool(0.5)),
        "array" => {
            let items = schema
                .get("items")
                .cloned()
                .unwrap_or(json!({"type": "string"}));
            let min = schema.get("minItems").and_then(Value::as_u64).unwrap_or(1) as usize;
            let max = schema
                .get("maxItems")
                .and_then(Value::as_u64)
                .map_or(min.max(3), |m| m as usize);
            if max < min {
                return Err(format!("{at}: minItems {min} is above maxItems {max}"));
            }
            let n = rng.gen_range(min..=max.min(min + 3));
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                out.push(sample_value(&items, rng, at, optional_share)?);
            }
            // A list naming the same thing twice reads as a mistake in a request.
            if schema.get("uniqueItems") == Some(&Value::Bool(true))
                || out.iter().all(Value::is_string)
            {
                let mut seen = HashSet::new();
                let unique: Vec<Value> = out
                    .iter()
                    .filter(|v| seen.insert(v.to_string()))
                    .cloned()
                    .collect();
                if unique.len() >= min {
                    out = unique;
                }
            }
            Value::Array(out)
        }
        "object" => Value::Object(sample_object(schema, rng, at, optional_share)?),
        "null" => Value::Null,
        _ => match sample_string(schema, name, rng) {
            Some(s) => json!(s),
            None => {
                return Err(format!(
                "{at}: a string with a pattern needs \"examples\" (or an \"enum\") to sample from"
            ))
            }
        },
    })
}

/// Arguments for an object schema: required properties always, others with probability
/// `optional_share`.
fn sample_object(
    schema: &Value,
    rng: &mut ChaCha8Rng,
    at: &str,
    optional_share: f64,
) -> Result<Map<String, Value>, String> {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out = Map::new();
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Ok(out);
    };
    for (k, s) in props {
        if required.contains(&k.as_str()) || rng.gen_bool(optional_share) {
            out.insert(
                k.clone(),
                sample_value(s, rng, &format!("{at}.{k}"), optional_share)?,
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_call_listed_tools_with_sampled_arguments_or_decline() {
        let cfg = ToolSynthConfig {
            n: 300,
            seed: 3,
            no_call: 0.2,
        };
        let recs = synth_tool_records(&builtin_tools(), &cfg).unwrap();
        assert_eq!(recs.len(), 300);
        assert_eq!(recs, synth_tool_records(&builtin_tools(), &cfg).unwrap());
        let mut no_call = 0;
        let mut requests = HashSet::new();
        let mut called = HashSet::new();
        for r in &recs {
            let names: Vec<&str> = r["tools"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["function"]["name"].as_str().unwrap())
                .collect();
            assert!(!names.is_empty());
            let request = r["messages"][0]["content"].as_str().unwrap();
            assert!(requests.insert(request.to_string()), "duplicate {request}");
            let answer = &r["messages"][1];
            match answer.get("tool_calls") {
                Some(calls) => {
                    let f = &calls[0]["function"];
                    let name = f["name"].as_str().unwrap();
                    assert!(names.contains(&name), "{name} not in {names:?}");
                    called.insert(name.to_string());
                    let args: Value =
                        serde_json::from_str(f["arguments"].as_str().unwrap()).unwrap();
                    // Every required argument is there, and every value is in the request.
                    let tool = builtin_tools()
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|t| t["function"]["name"] == json!(name))
                        .unwrap()
                        .clone();
                    for req in tool["function"]["parameters"]["required"]
                        .as_array()
                        .unwrap()
                    {
                        assert!(args.get(req.as_str().unwrap()).is_some());
                    }
                    for (k, v) in args.as_object().unwrap() {
                        if let Value::String(s) = v {
                            assert!(request.contains(s.as_str()), "{k}={s} not in {request}");
                        }
                    }
                }
                None => {
                    no_call += 1;
                    assert!(answer["content"].as_str().unwrap().len() > 5);
                }
            }
        }
        assert!((30..=90).contains(&no_call), "{no_call}");
        assert_eq!(called.len(), 6, "{called:?}");
    }

    /// Booleans read as what they mean: `on` as a state ("switched off", never "on on" or
    /// "on: no"), other flags with their name and an unambiguous yes/no.
    #[test]
    fn booleans_are_phrased_unambiguously() {
        let cfg = ToolSynthConfig {
            n: 400,
            seed: 3,
            no_call: 0.0,
        };
        let mut seen = 0;
        for r in synth_tool_records(&builtin_tools(), &cfg).unwrap() {
            let request = r["messages"][0]["content"].as_str().unwrap().to_lowercase();
            assert!(!request.contains("with with"), "{request}");
            let call = &r["messages"][1]["tool_calls"][0]["function"];
            let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
            for (k, v) in args.as_object().unwrap() {
                let Some(b) = v.as_bool() else { continue };
                seen += 1;
                if k == "on" {
                    let state = if b { "on" } else { "off" };
                    assert!(request.contains(state), "{k}={b}: {request}");
                    assert!(
                        !request.contains("on on") && !request.contains("on:"),
                        "{request}"
                    );
                } else {
                    let name = words(k);
                    let marks: &[&str] = if b {
                        &["with ", "yes", "true"]
                    } else {
                        &["without ", ": no", "false"]
                    };
                    assert!(request.contains(&name), "{k}: {request}");
                    assert!(
                        marks.iter().any(|m| request.contains(m)),
                        "{k}={b}: {request}"
                    );
                }
            }
        }
        assert!(seen > 50, "{seen}");
    }

    #[test]
    fn schemas_that_cannot_be_sampled_are_named() {
        let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}$"}},
            "required": ["code"]}}}]);
        let e = synth_tool_records(&tools, &ToolSynthConfig::default()).unwrap_err();
        assert!(e.contains("f.code") && e.contains("examples"), "{e}");
        let e = synth_tool_records(&json!([]), &ToolSynthConfig::default()).unwrap_err();
        assert!(e.contains("non-empty"), "{e}");
        let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"n": {"type": "integer", "minimum": 5, "maximum": 1}},
            "required": ["n"]}}}]);
        let e = synth_tool_records(&tools, &ToolSynthConfig::default()).unwrap_err();
        assert!(e.contains("f.n"), "{e}");
    }
}
