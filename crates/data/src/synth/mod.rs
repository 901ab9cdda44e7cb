//! Synthetic receipts: OCR-like text in, a clean structured receipt out.
//!
//! Real receipt datasets (SROIE, CORD) are small, licence-bound and fixed in time; a generator
//! lets us make as many examples as training needs, with a truth that is correct to the cent, and
//! lets us move the world forward a year to test generalisation. Each receipt is built as a model
//! first (in integer cents, so arithmetic is exact), then printed in one of several layouts and
//! date/money formats, then — separately — corrupted with OCR noise. The truth is taken from the
//! model, never re-parsed from the printed text, so noise can never leak into it.
//!
//! # Truth conventions
//! - Strings (retailer, address, item names, tax names) are exactly as printed before noise, so
//!   they are learnable from the input; compare them with the `case` normaliser.
//! - `timestamp` is ISO 8601 to the minute, `YYYY-MM-DDTHH:MM`, whatever the receipt prints
//!   (printed seconds are dropped: not every receipt has them, and a field the input sometimes
//!   lacks cannot be learnt).
//! - Money is a JSON number in the receipt's currency with at most 2 decimals; `qty` has up to 3
//!   (weighed and metered goods). `amount = round(qty × price)`, `subtotal = Σ amount`,
//!   `total = subtotal − discount + Σ taxes` when `tax_included` is false, else
//!   `total = subtotal − discount` (the taxes are the VAT/GST share already inside the prices).
//! - `discount` is 0 when there is none and `taxes` is `[]` where no tax is charged (Oregon),
//!   so every key is always present and the schema stays a fixed shape for constrained decoding.

mod noise;
mod render;
mod tables;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

pub use noise::add_noise;
pub use tables::Country;
use tables::{Category, Product, Retailer, Unit};

use crate::Record;

/// What to generate. Build with struct update syntax: `SynthConfig { n: 100, ..Default::default() }`.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    /// Number of receipts.
    pub n: usize,
    /// Same seed and config give byte-identical records; receipt `i` depends only on
    /// (`seed`, `i`, `year`, `countries`, `max_items`), so a smaller `n` gives a prefix of a
    /// larger one and changing `noise_rate` leaves the truths unchanged.
    pub seed: u64,
    /// The period: retailers, products, formats, layouts, prices and tax rates of that year.
    pub year: u16,
    /// Probability that a printed character is corrupted (and, ×3, that a line is split or
    /// merged). 0 gives clean text; 0.02 looks like a decent OCR engine on a crumpled receipt.
    pub noise_rate: f64,
    /// Countries to draw from; empty means all.
    pub countries: Vec<Country>,
    /// Largest number of line items (at least 1).
    pub max_items: usize,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            n: 1000,
            seed: 0,
            year: 2019,
            noise_rate: 0.0,
            countries: vec![],
            max_items: 12,
        }
    }
}

/// Generates `cfg.n` receipts; see the module docs for the truth's conventions.
pub fn receipts(cfg: &SynthConfig) -> Vec<Record> {
    (0..cfg.n).map(|i| receipt(cfg, i as u64)).collect()
}

/// Receipt `i` of the stream `cfg` describes.
pub fn receipt(cfg: &SynthConfig, i: u64) -> Record {
    let mut rng = ChaCha8Rng::seed_from_u64(mix(cfg.seed, i, cfg.year as u64));
    let model = build(&mut rng, cfg);
    let text = render::render(&mut rng, &model, cfg.year);
    let mut noise_rng = ChaCha8Rng::seed_from_u64(mix(cfg.seed, i, 0x6e6f697365));
    let input = add_noise(&text, cfg.noise_rate, &mut noise_rng);
    Record {
        input,
        output: model.truth(),
    }
}

/// SplitMix64 over the stream coordinates, so nearby seeds give unrelated streams.
fn mix(seed: u64, i: u64, salt: u64) -> u64 {
    let mut z = seed
        .wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(salt.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// JSON Schema (2020-12) of the truth `receipts` produces.
///
/// Every object is closed (`additionalProperties: false`) and every key required, so the same
/// schema drives constrained decoding (the output can only take this shape) and validation.
pub fn receipts_schema() -> Value {
    let money = json!({"type": "number"});
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "receipt",
        "type": "object",
        "additionalProperties": false,
        "required": ["retailer", "address", "postal_code", "country", "timestamp", "currency",
                     "items", "subtotal", "discount", "taxes", "tax_included", "total",
                     "payment_method", "card_last4"],
        "properties": {
            "retailer": {"type": "string"},
            "address": {"type": "string"},
            "postal_code": {"type": "string"},
            "country": {"enum": ["US", "CA", "GB", "DE", "MY", "AU"]},
            "timestamp": {"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]$"},
            "currency": {"enum": ["USD", "CAD", "GBP", "EUR", "MYR", "AUD"]},
            "items": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["name", "qty", "price", "amount"],
                    "properties": {
                        "name": {"type": "string"},
                        "qty": {"type": "number"},
                        "price": money,
                        "amount": money
                    }
                }
            },
            "subtotal": money,
            "discount": money,
            "taxes": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["name", "rate", "amount"],
                    "properties": {
                        "name": {"type": "string"},
                        "rate": {"type": "number"},
                        "amount": money
                    }
                }
            },
            "tax_included": {"type": "boolean"},
            "total": money,
            "payment_method": {"enum": ["cash", "visa", "mastercard", "amex", "debit", "mobile"]},
            "card_last4": {"type": ["string", "null"], "pattern": "^[0-9]{4}$"}
        }
    })
}

/// How to score receipts, as the JSON a `smolt_eval::EvalConfig` deserialises from (kept as
/// JSON so this crate need not depend on the evaluator).
///
/// Text is compared case-insensitively because the truth keeps the printed case, which OCR
/// and models both garble harmlessly; addresses and postcodes ignore punctuation and spacing
/// ("K1A 0B1" = "K1A0B1"); the timestamp is compared as a date-time and money to the cent.
pub fn receipts_eval_config() -> Value {
    json!({
        "fields": {
            "retailer": "case",
            "address": "alnum",
            "postal_code": "alnum",
            "country": "case",
            "timestamp": "datetime",
            "currency": "case",
            "items.name": "case",
            "items.qty": "number",
            "items.price": "number",
            "items.amount": "number",
            "subtotal": "number",
            "discount": "number",
            "taxes.name": "case",
            "taxes.rate": "number",
            "taxes.amount": "number",
            "tax_included": "exact",
            "total": "number",
            "payment_method": "case",
            "card_last4": "alnum"
        },
        "number_tolerance": 0.005
    })
}

/// The arithmetic a receipt truth must satisfy, to the cent; an empty list means consistent.
///
/// Public so that predictions can be checked the same way (a prediction can match every field
/// the model read correctly and still not add up).
pub fn arithmetic_errors(truth: &Value) -> Vec<String> {
    let cents = |v: &Value| v.as_f64().map(|x| (x * 100.0).round() as i64);
    let mut errs = Vec::new();
    let Some(items) = truth["items"].as_array() else {
        return vec!["items is not an array".into()];
    };
    let mut sum = 0;
    for (i, it) in items.iter().enumerate() {
        let (Some(q), Some(p), Some(a)) = (
            it["qty"].as_f64(),
            cents(&it["price"]),
            cents(&it["amount"]),
        ) else {
            errs.push(format!("items[{i}]: qty/price/amount not numbers"));
            continue;
        };
        let want = mul_div_round((q * 1000.0).round() as i64, p, 1000);
        if want != a {
            errs.push(format!(
                "items[{i}]: {q} x {p} = {want} cents, amount says {a}"
            ));
        }
        sum += a;
    }
    let (Some(sub), Some(disc), Some(total)) = (
        cents(&truth["subtotal"]),
        cents(&truth["discount"]),
        cents(&truth["total"]),
    ) else {
        return vec!["subtotal/discount/total not numbers".into()];
    };
    if sum != sub {
        errs.push(format!("subtotal {sub} != sum of items {sum}"));
    }
    let included = truth["tax_included"].as_bool().unwrap_or(false);
    let taxes: Vec<(f64, i64)> = truth["taxes"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| Some((t["rate"].as_f64()?, cents(&t["amount"])?)))
                .collect()
        })
        .unwrap_or_default();
    let tax_sum: i64 = taxes.iter().map(|t| t.1).sum();
    let want_total = sub - disc + if included { 0 } else { tax_sum };
    if want_total != total {
        errs.push(format!(
            "total {total} != subtotal {sub} - discount {disc} + taxes {tax_sum}"
        ));
    }
    if !included {
        for (rate, amount) in taxes {
            let want = mul_div_round(sub - disc, (rate * 1000.0).round() as i64, 100_000);
            if want != amount {
                errs.push(format!(
                    "tax {rate}% of {} = {want}, says {amount}",
                    sub - disc
                ));
            }
        }
    } else if tax_sum > total {
        errs.push(format!("included taxes {tax_sum} exceed the total {total}"));
    }
    errs
}

/// A calendar time; receipts need no time zones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DateTime {
    pub y: i32,
    pub m: u32,
    pub d: u32,
    pub hh: u32,
    pub mm: u32,
    pub ss: u32,
}

impl DateTime {
    pub fn iso_minute(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}",
            self.y, self.m, self.d, self.hh, self.mm
        )
    }
    /// 0 = Monday.
    pub fn weekday(&self) -> usize {
        (days_from_civil(self.y, self.m, self.d) + 3).rem_euclid(7) as usize
    }
    fn ymd(&self) -> (i32, u32, u32) {
        (self.y, self.m, self.d)
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y } as i64;
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

pub(crate) fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    ((yoe + era * 400 + (m <= 2) as i64) as i32, m, d)
}

#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub name: String,
    /// Quantity in thousandths (1000 = one piece; 452 = 0.452 kg).
    pub qty_milli: i64,
    pub unit: Unit,
    pub price: i64,
    pub amount: i64,
    pub food: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Tax {
    pub name: &'static str,
    /// Rate in thousandths of a percent (9.975% = 9975), so Québec's QST is exact.
    pub rate: i64,
    pub amount: i64,
    /// What the rate applied to: the gross (tax included) or the net (tax added), in cents.
    pub base: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct Discount {
    pub label: String,
    pub amount: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pay {
    Cash,
    Visa,
    Mastercard,
    Amex,
    Debit,
    Mobile,
}

impl Pay {
    fn key(self) -> &'static str {
        match self {
            Pay::Cash => "cash",
            Pay::Visa => "visa",
            Pay::Mastercard => "mastercard",
            Pay::Amex => "amex",
            Pay::Debit => "debit",
            Pay::Mobile => "mobile",
        }
    }
}

/// The receipt as a fact, before printing.
pub(crate) struct Receipt {
    pub country: Country,
    /// Name as printed in the header.
    pub name: String,
    pub address_lines: Vec<String>,
    pub postal_code: String,
    pub phone: String,
    pub tax_id: Option<String>,
    pub ts: DateTime,
    pub items: Vec<Item>,
    pub subtotal: i64,
    pub discount: Option<Discount>,
    pub taxes: Vec<Tax>,
    pub tax_included: bool,
    pub total: i64,
    pub pay: Pay,
    pub last4: Option<String>,
    /// Cash handed over (cash payments only).
    pub tendered: Option<i64>,
    pub receipt_no: u32,
    pub till: u32,
    pub cashier: &'static str,
}

fn money(cents: i64) -> Value {
    json!(cents as f64 / 100.0)
}

fn qty_value(milli: i64) -> Value {
    if milli % 1000 == 0 {
        json!(milli / 1000)
    } else {
        json!(milli as f64 / 1000.0)
    }
}

impl Receipt {
    /// The address as one line, the way the truth stores it.
    pub fn address(&self) -> String {
        self.address_lines
            .iter()
            .map(|l| l.trim_end_matches([',', '.']).trim())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn truth(&self) -> Value {
        json!({
            "retailer": self.name,
            "address": self.address(),
            "postal_code": self.postal_code,
            "country": self.country.code(),
            "timestamp": self.ts.iso_minute(),
            "currency": self.country.currency(),
            "items": self.items.iter().map(|it| json!({
                "name": it.name,
                "qty": qty_value(it.qty_milli),
                "price": money(it.price),
                "amount": money(it.amount),
            })).collect::<Vec<_>>(),
            "subtotal": money(self.subtotal),
            "discount": money(self.discount.as_ref().map_or(0, |d| d.amount)),
            "taxes": self.taxes.iter().map(|t| json!({
                "name": t.name,
                "rate": t.rate as f64 / 1000.0,
                "amount": money(t.amount),
            })).collect::<Vec<_>>(),
            "tax_included": self.tax_included,
            "total": money(self.total),
            "payment_method": self.pay.key(),
            "card_last4": self.last4,
        })
    }
}

/// `a × b / d`, rounded half up (all operands non-negative).
pub(crate) fn mul_div_round(a: i64, b: i64, d: i64) -> i64 {
    (a * b + d / 2) / d
}

fn digits(rng: &mut ChaCha8Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}

fn upper_letter(rng: &mut ChaCha8Rng, from: &[u8]) -> char {
    *from.choose(rng).unwrap() as char
}

/// Cumulative price growth from 2015, with the 2021–22 inflation spike.
fn inflation(year: u16) -> f64 {
    (2015..year.max(2015))
        .map(|y| {
            if (2021..=2022).contains(&y) {
                1.07
            } else {
                1.025
            }
        })
        .product()
}

fn build(rng: &mut ChaCha8Rng, cfg: &SynthConfig) -> Receipt {
    let year = cfg.year;
    let countries: &[Country] = if cfg.countries.is_empty() {
        &Country::ALL
    } else {
        &cfg.countries
    };
    let country = *countries.choose(rng).unwrap();
    let pool: Vec<&'static Retailer> = tables::RETAILERS
        .iter()
        .filter(|r| r.since <= year && r.countries.contains(&country))
        .collect();
    let retailer = *pool
        .choose(rng)
        .expect("every country has a retailer in every year");

    // When: any day of the year, shop hours.
    let start = days_from_civil(year as i32, 1, 1);
    let len = days_from_civil(year as i32 + 1, 1, 1) - start;
    let (y, m, d) = civil_from_days(start + rng.gen_range(0..len));
    let ts = DateTime {
        y,
        m,
        d,
        hh: rng.gen_range(7..23),
        mm: rng.gen_range(0..60),
        ss: rng.gen_range(0..60),
    };

    let (city, region) = *tables::cities(country).choose(rng).unwrap();
    let postal_code = postal_code(rng, country, city, region);
    let address_lines = address_lines(rng, country, city, region, &postal_code);
    let phone = phone(rng, country);
    let tax_id = tax_id(rng, country);

    // Items.
    let products: Vec<&Product> = tables::products(retailer.category)
        .iter()
        .filter(|p| p.since <= year && p.sold_in(country))
        .collect();
    let max_items = cfg.max_items.max(1);
    let n_items = match retailer.category {
        Category::Fuel => rng.gen_range(1..=3.min(max_items)),
        Category::Cafe => rng.gen_range(1..=5.min(max_items)),
        _ => {
            // Mostly short receipts, with a tail of long ones.
            let k = if rng.gen_bool(0.7) {
                rng.gen_range(1..=5)
            } else {
                rng.gen_range(1..=12)
            };
            k.min(max_items)
        }
    };
    let price_factor = country.price_factor() * inflation(year);
    let german = country == Country::De;
    let upper = rng.gen_bool(0.6);
    let mut items = Vec::with_capacity(n_items);
    // Distinct products (one price each on a receipt); a scanned-twice line is added below.
    for &prod in products.choose_multiple(rng, n_items) {
        let mut name = match (german, prod.de) {
            (true, Some(de)) => de.to_string(),
            _ => prod.name.to_string(),
        };
        if upper {
            name = name.to_uppercase();
        }
        let raw = prod.cents as f64 * price_factor * rng.gen_range(0.9..1.1);
        let mut price = raw.round().max(1.0) as i64;
        if prod.unit == Unit::Each && price > 100 && rng.gen_bool(0.6) {
            // Charm pricing: x.99 / x.49.
            price = (price / 50) * 50 + 49;
        }
        let qty_milli = match prod.unit {
            Unit::Each => {
                if rng.gen_bool(0.72) {
                    1000
                } else {
                    rng.gen_range(
                        2..=if retailer.category == Category::Hardware {
                            12
                        } else {
                            4
                        },
                    ) * 1000
                }
            }
            Unit::Kg => rng.gen_range(120..=2500),
            Unit::Litre => rng.gen_range(8_000..=65_000),
            Unit::Kwh => rng.gen_range(5_000..=60_000),
        };
        let amount = mul_div_round(qty_milli, price, 1000);
        items.push(Item {
            name,
            qty_milli,
            unit: prod.unit,
            price,
            amount,
            food: prod.food,
        });
    }
    if items.len() < max_items && rng.gen_bool(0.05) {
        let dup = items[rng.gen_range(0..items.len())].clone();
        items.push(dup);
    }
    let subtotal: i64 = items.iter().map(|i| i.amount).sum();

    // Discount: member percentage or a coupon, never the whole bill.
    let discount = if rng.gen_bool(0.22) && subtotal > 200 {
        let (label, amount) = if rng.gen_bool(0.5) {
            let pct = *[5i64, 10, 15, 20].choose(rng).unwrap();
            let label = match country {
                Country::De => format!("Rabatt {pct}%"),
                Country::My => format!("MEMBER DISC {pct}%"),
                _ => format!(
                    "{} {pct}%",
                    ["MEMBER DISCOUNT", "STAFF DISCOUNT", "LOYALTY"][rng.gen_range(0..3)]
                ),
            };
            (label, mul_div_round(subtotal, pct, 100))
        } else {
            let amount = (*[100i64, 200, 300, 500].choose(rng).unwrap()).min(subtotal / 2);
            let label = match country {
                Country::De => "Gutschein".to_string(),
                _ => ["COUPON", "PROMO", "VOUCHER"][rng.gen_range(0..3)].to_string(),
            };
            (label, amount)
        };
        Some(Discount { label, amount })
    } else {
        None
    };
    let disc = discount.as_ref().map_or(0, |d| d.amount);

    let (tax_included, rules) = tax_rules(country, region, retailer.category, &ts);
    let mut taxes = Vec::new();
    for rule in rules {
        let gross: i64 = items
            .iter()
            .filter(|it| match rule.class {
                Class::All => true,
                Class::Standard => !it.food,
                Class::Reduced => it.food,
            })
            .map(|it| it.amount)
            .sum();
        if gross == 0 {
            continue;
        }
        // The discount is shared across tax classes in proportion to their gross.
        let base = gross - mul_div_round(disc, gross, subtotal);
        let amount = if tax_included {
            mul_div_round(base, rule.rate, 100_000 + rule.rate)
        } else {
            mul_div_round(base, rule.rate, 100_000)
        };
        taxes.push(Tax {
            name: rule.name,
            rate: rule.rate,
            amount,
            base,
        });
    }
    let total = subtotal - disc
        + if tax_included {
            0
        } else {
            taxes.iter().map(|t| t.amount).sum()
        };

    // Payment.
    // Phone wallets exist from 2017 but are rare until 2020: a later period sees far more
    // of them, yet an earlier one has enough to learn the label from.
    let mobile_share = match year {
        ..=2016 => 0.0,
        2017..=2019 => 0.04,
        2020 => 0.12,
        _ => 0.2,
    };
    let pay = if rng.gen_bool(mobile_share) {
        Pay::Mobile
    } else {
        let r: f64 = rng.gen();
        match r {
            _ if r < 0.3 => Pay::Cash,
            _ if r < 0.57 => Pay::Visa,
            _ if r < 0.8 => Pay::Mastercard,
            _ if r < 0.86 && country != Country::De && country != Country::My => Pay::Amex,
            _ => Pay::Debit,
        }
    };
    let last4 = (pay != Pay::Cash).then(|| digits(rng, 4));
    let tendered = (pay == Pay::Cash).then(|| {
        let unit = match country {
            Country::My => 1000,
            _ => 500,
        };
        let notes = [unit, unit * 2, unit * 4, unit * 10, unit * 20];
        let mut t = notes
            .iter()
            .copied()
            .find(|&n| n >= total)
            .unwrap_or((total / 5000 + 1) * 5000);
        if rng.gen_bool(0.3) {
            t = total; // exact change
        }
        t
    });

    let name = if rng.gen_bool(0.55) {
        retailer.name.to_uppercase()
    } else {
        retailer.name.to_string()
    };
    Receipt {
        country,
        name,
        address_lines,
        postal_code,
        phone,
        tax_id,
        ts,
        items,
        subtotal,
        discount,
        taxes,
        tax_included,
        total,
        pay,
        last4,
        tendered,
        receipt_no: rng.gen_range(1000..999_999),
        till: rng.gen_range(1..20),
        cashier: tables::CASHIERS.choose(rng).unwrap(),
    }
}

#[derive(Clone, Copy)]
enum Class {
    All,
    Standard,
    Reduced,
}

struct Rule {
    name: &'static str,
    rate: i64,
    class: Class,
}

const fn rule(name: &'static str, rate: i64, class: Class) -> Rule {
    Rule { name, rate, class }
}

/// Which taxes apply, and whether prices already include them, on that day. The dated changes
/// are real ones (Germany's 2020 VAT cut, the UK's hospitality rate, Malaysia's GST→SST) so a
/// later period has rates the earlier one never showed.
fn tax_rules(c: Country, region: &str, cat: Category, ts: &DateTime) -> (bool, Vec<Rule>) {
    let date = ts.ymd();
    let between = |a: (i32, u32, u32), b: (i32, u32, u32)| a <= date && date <= b;
    let hospitality = matches!(cat, Category::Cafe | Category::Restaurant);
    match c {
        Country::Us => {
            let rate = match region {
                "IL" => 8750,
                "TX" => 8250,
                "OR" => return (false, vec![]),
                "WA" if date >= (2021, 4, 1) => 10250,
                "WA" => 10100,
                "NY" => 8000,
                "CA" if date >= (2020, 4, 1) => 8350,
                "CA" => 7975,
                _ => 8810,
            };
            (
                false,
                vec![rule(
                    ["SALES TAX", "TAX", "STATE TAX"][(ts.d % 3) as usize],
                    rate,
                    Class::All,
                )],
            )
        }
        Country::Ca => match region {
            "BC" => (
                false,
                vec![rule("GST", 5000, Class::All), rule("PST", 7000, Class::All)],
            ),
            "QC" => (
                false,
                vec![rule("TPS", 5000, Class::All), rule("TVQ", 9975, Class::All)],
            ),
            _ => (false, vec![rule("HST", 13000, Class::All)]),
        },
        Country::Gb => {
            let rate = if hospitality && between((2020, 7, 15), (2021, 9, 30)) {
                5000
            } else if hospitality && between((2021, 10, 1), (2022, 3, 31)) {
                12500
            } else {
                20000
            };
            // Food in shops is zero-rated; café food is not.
            let class = if hospitality {
                Class::All
            } else {
                Class::Standard
            };
            (true, vec![rule("VAT", rate, class)])
        }
        Country::De => {
            let cut = between((2020, 7, 1), (2020, 12, 31));
            let (std, red) = if cut { (16000, 5000) } else { (19000, 7000) };
            (
                true,
                vec![
                    rule("MwSt", std, Class::Standard),
                    rule("MwSt", red, Class::Reduced),
                ],
            )
        }
        Country::My => {
            if date < (2018, 6, 1) {
                (false, vec![rule("GST", 6000, Class::All)])
            } else if date < (2018, 9, 1) {
                (false, vec![rule("GST", 0, Class::All)])
            } else if date >= (2024, 3, 1) && !hospitality {
                (false, vec![rule("SST", 8000, Class::All)])
            } else {
                (false, vec![rule("SST", 6000, Class::All)])
            }
        }
        Country::Au => (true, vec![rule("GST", 10000, Class::Standard)]),
    }
}

fn postal_code(rng: &mut ChaCha8Rng, c: Country, city: &str, region: &str) -> String {
    const CA_LETTERS: &[u8] = b"ABCEGHJKLMNPRSTVWXYZ";
    const GB_INWARD: &[u8] = b"ABDEFGHJLNPQRSTUWXYZ";
    match c {
        Country::Us => {
            let prefix = match region {
                "IL" => "627",
                "TX" => "787",
                "OR" => "972",
                "WA" => "981",
                "NY" => "122",
                "CA" => "937",
                _ => "802",
            };
            let zip = format!("{prefix}{}", digits(rng, 2));
            if rng.gen_bool(0.3) {
                format!("{zip}-{}", digits(rng, 4))
            } else {
                zip
            }
        }
        Country::Ca => {
            let first = match region {
                "BC" => 'V',
                "QC" => *['H', 'G', 'J'].choose(rng).unwrap(),
                _ => *['K', 'L', 'M'].choose(rng).unwrap(),
            };
            format!(
                "{first}{}{} {}{}{}",
                rng.gen_range(0..10),
                upper_letter(rng, CA_LETTERS),
                rng.gen_range(0..10),
                upper_letter(rng, CA_LETTERS),
                rng.gen_range(0..10)
            )
        }
        Country::Gb => {
            let outward: &[&str] = match city {
                "London" => &["SW1A", "E1", "N7", "SE15", "W1D", "EC2A"],
                "Manchester" => &["M1", "M14", "M20"],
                "Oxford" => &["OX1", "OX4"],
                "Leeds" => &["LS1", "LS6"],
                "Bristol" => &["BS1", "BS8"],
                _ => &["EH1", "EH9"],
            };
            format!(
                "{} {}{}{}",
                outward.choose(rng).unwrap(),
                rng.gen_range(0..10),
                upper_letter(rng, GB_INWARD),
                upper_letter(rng, GB_INWARD)
            )
        }
        Country::De => {
            let (lo, hi) = match city {
                "Berlin" => (10115, 14199),
                "Hamburg" => (20095, 22769),
                "München" => (80331, 81929),
                "Köln" => (50667, 51149),
                "Leipzig" => (4103, 4357),
                _ => (79098, 79117),
            };
            format!("{:05}", rng.gen_range(lo..=hi))
        }
        Country::My => {
            let (lo, hi) = match city {
                "Kuala Lumpur" => (50000, 60000),
                "Petaling Jaya" => (46000, 47999),
                "Shah Alam" => (40000, 40999),
                "Johor Bahru" => (80000, 81999),
                "Georgetown" => (10000, 10999),
                _ => (30000, 31999),
            };
            format!("{:05}", rng.gen_range(lo..=hi))
        }
        Country::Au => {
            let (lo, hi) = match region {
                "NSW" => (2000, 2234),
                "VIC" => (3000, 3207),
                "QLD" => (4000, 4179),
                "WA" => (6000, 6199),
                "SA" => (5000, 5199),
                _ => (7000, 7099),
            };
            format!("{}", rng.gen_range(lo..=hi))
        }
    }
}

fn address_lines(
    rng: &mut ChaCha8Rng,
    c: Country,
    city: &str,
    region: &str,
    pc: &str,
) -> Vec<String> {
    let street = *tables::streets(c).choose(rng).unwrap();
    let no = rng.gen_range(1..2400);
    let upper = rng.gen_bool(0.4);
    let mut lines = match c {
        Country::Us => vec![format!("{no} {street}"), format!("{city}, {region} {pc}")],
        Country::Ca => vec![format!("{no} {street}"), format!("{city}, {region} {pc}")],
        Country::Gb => {
            if rng.gen_bool(0.5) {
                vec![
                    format!("{} {street}", no % 200 + 1),
                    city.to_string(),
                    pc.to_string(),
                ]
            } else {
                vec![format!("{} {street}", no % 200 + 1), format!("{city} {pc}")]
            }
        }
        Country::De => vec![format!("{street} {}", no % 120 + 1), format!("{pc} {city}")],
        Country::My => {
            let lot = if rng.gen_bool(0.5) {
                format!("NO. {},", no % 90 + 1)
            } else {
                format!("LOT {},", no % 300 + 1)
            };
            let mut v = vec![format!("{lot} {street},"), format!("{pc} {city},")];
            if rng.gen_bool(0.5) {
                v.push(format!("{region}."));
            } else if let Some(last) = v.last_mut() {
                *last = last.trim_end_matches(',').to_string() + ".";
            }
            v
        }
        Country::Au => {
            let shop = if rng.gen_bool(0.4) {
                format!("Shop {}, ", no % 30 + 1)
            } else {
                String::new()
            };
            vec![
                format!("{shop}{} {street}", no % 400 + 1),
                format!("{city} {region} {pc}"),
            ]
        }
    };
    if upper || c == Country::My {
        for l in &mut lines {
            *l = l.to_uppercase();
        }
    }
    lines
}

fn phone(rng: &mut ChaCha8Rng, c: Country) -> String {
    match c {
        Country::Us | Country::Ca => {
            let (a, b) = (
                format!("{}{}", rng.gen_range(2..10), digits(rng, 2)),
                digits(rng, 4),
            );
            match rng.gen_range(0..3) {
                0 => format!("({a}) 555-{b}"),
                1 => format!("{a}-555-{b}"),
                _ => format!("{a}.555.{b}"),
            }
        }
        Country::Gb => format!(
            "0{} {} {}",
            ["20", "161", "113", "117", "131", "1865"][rng.gen_range(0..6)],
            digits(rng, 3),
            digits(rng, 4)
        ),
        Country::De => {
            let area = ["30", "40", "89", "221", "341", "761"][rng.gen_range(0..6)];
            if rng.gen_bool(0.5) {
                format!("0{area} {}", digits(rng, 7))
            } else {
                format!("+49 {area} {}", digits(rng, 7))
            }
        }
        Country::My => {
            if rng.gen_bool(0.7) {
                format!(
                    "0{}-{} {}",
                    rng.gen_range(3..10),
                    digits(rng, 4),
                    digits(rng, 4)
                )
            } else {
                format!(
                    "01{}-{} {}",
                    rng.gen_range(0..10),
                    digits(rng, 3),
                    digits(rng, 4)
                )
            }
        }
        Country::Au => format!(
            "(0{}) {} {}",
            [2, 3, 7, 8][rng.gen_range(0..4)],
            digits(rng, 4),
            digits(rng, 4)
        ),
    }
}

fn tax_id(rng: &mut ChaCha8Rng, c: Country) -> Option<String> {
    if !rng.gen_bool(0.7) {
        return None;
    }
    Some(match c {
        Country::Us => return None,
        Country::Ca => format!("HST/GST # {}RT0001", digits(rng, 9)),
        Country::Gb => format!(
            "VAT No. GB {} {} {}",
            digits(rng, 3),
            digits(rng, 4),
            digits(rng, 2)
        ),
        Country::De => format!("USt-IdNr.: DE{}", digits(rng, 9)),
        Country::My => format!("GST ID: {}", digits(rng, 12)),
        Country::Au => format!(
            "ABN {} {} {} {}",
            digits(rng, 2),
            digits(rng, 3),
            digits(rng, 3),
            digits(rng, 3)
        ),
    })
}

#[cfg(test)]
mod tests;
