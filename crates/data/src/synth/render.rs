//! Printing a receipt model as text: layouts, money and date formats, header and footer clutter.
//!
//! The variety is the point: a model that sees one layout learns positions, not meaning. The
//! clutter (receipt numbers, cashiers, cash tendered, change, auth codes) is there because real
//! receipts are full of numbers that are *not* the total.

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::tables::{Country, Unit};
use super::{DateTime, Item, Pay, Receipt};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Name left, amount right; quantities on a second line.
    Columns,
    /// SROIE style: description line, then "qty x price  amount".
    Sroie,
    /// A QTY / ITEM / PRICE / AMOUNT table.
    Table,
    /// App/tablet POS receipts ("2x Latte @4.75  9.50"), common from 2020.
    Compact,
}

struct Style {
    width: usize,
    upper: bool,
    symbol_on_amounts: bool,
    thousands: bool,
}

/// Money without currency: "1,234.50" / "1234.50" / "1.234,50" (DE).
fn num(c: Country, cents: i64, thousands: bool) -> String {
    let neg = cents < 0;
    let cents = cents.abs();
    let (units, frac) = (cents / 100, cents % 100);
    let (tsep, dsep) = if c == Country::De {
        ('.', ',')
    } else {
        (',', '.')
    };
    let mut int = units.to_string();
    if thousands && units >= 1000 {
        let digits: Vec<char> = int.chars().collect();
        let first = match digits.len() % 3 {
            0 => 3,
            r => r,
        };
        int = digits[..first].iter().collect();
        for group in digits[first..].chunks(3) {
            int.push(tsep);
            int.extend(group);
        }
    }
    format!("{}{int}{dsep}{frac:02}", if neg { "-" } else { "" })
}

/// Money with its currency, the way that country prints a total.
fn cur(c: Country, cents: i64, thousands: bool) -> String {
    let n = num(c, cents, thousands);
    match c {
        Country::Us | Country::Ca | Country::Au => format!("${n}"),
        Country::Gb => format!("£{n}"),
        Country::De => format!("{n} €"),
        Country::My => format!("RM {n}"),
    }
}

fn qty_str(c: Country, milli: i64) -> String {
    if milli % 1000 == 0 {
        return (milli / 1000).to_string();
    }
    let s = format!("{}.{:03}", milli / 1000, milli % 1000);
    if c == Country::De {
        s.replace('.', ",")
    } else {
        s
    }
}

fn unit_suffix(u: Unit) -> &'static str {
    match u {
        Unit::Each => "",
        Unit::Kg => "kg",
        Unit::Litre => "L",
        Unit::Kwh => "kWh",
    }
}

/// `left` and `right` on one line of `width`, at least two spaces apart.
fn lr(left: &str, right: &str, width: usize) -> String {
    let used = left.chars().count() + right.chars().count();
    let pad = if used + 2 <= width { width - used } else { 2 };
    format!("{left}{}{right}", " ".repeat(pad))
}

fn center(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n >= width {
        s.to_string()
    } else {
        format!("{}{s}", " ".repeat((width - n) / 2))
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// The printed date/time lines. Formats carry the first year they appear in.
fn date_lines(rng: &mut ChaCha8Rng, c: Country, t: &DateTime, year: u16) -> Vec<String> {
    let h12 = (t.hh + 11) % 12 + 1;
    let ampm = if t.hh < 12 { "AM" } else { "PM" };
    let yy = t.y % 100;
    let mon = MONTHS[t.m as usize - 1];
    let (y, m, d, hh, mi, ss) = (t.y, t.m, t.d, t.hh, t.mm, t.ss);
    let mon_upper = mon.to_uppercase();
    let ampm_lower = ampm.to_lowercase();
    let mut cands: Vec<String> = Vec::new();
    let us = matches!(c, Country::Us);
    if us {
        cands.push(format!("{m:02}/{d:02}/{y} {h12:02}:{mi:02} {ampm}"));
        cands.push(format!("{m:02}/{d:02}/{yy:02} {hh:02}:{mi:02}:{ss:02}"));
        cands.push(format!("{mon} {d}, {y} {h12}:{mi:02} {ampm}"));
        cands.push(format!("{m}/{d}/{y} {h12}:{mi:02} {ampm_lower}"));
    } else if c == Country::De {
        cands.push(format!("{d:02}.{m:02}.{y} {hh:02}:{mi:02}"));
        cands.push(format!(
            "{d:02}.{m:02}.{yy:02}  {hh:02}:{mi:02}:{ss:02} Uhr"
        ));
        cands.push(format!("Datum: {d:02}.{m:02}.{y}  Zeit: {hh:02}:{mi:02}"));
    } else {
        cands.push(format!("{d:02}/{m:02}/{y} {hh:02}:{mi:02}"));
        cands.push(format!("{d:02}-{m:02}-{yy:02} {hh:02}:{mi:02}"));
        cands.push(format!(
            "DATE: {d:02}/{m:02}/{y}  TIME: {hh:02}:{mi:02}:{ss:02}"
        ));
        // Older thermal printers: the month as capitals, and a 12-hour clock in lower case.
        cands.push(format!("{d:02} {mon_upper} {y} {hh:02}:{mi:02}"));
        cands.push(format!("{d:02}/{m:02}/{y} {h12}:{mi:02} {ampm_lower}"));
        if c == Country::Ca {
            cands.push(format!("{y}-{m:02}-{d:02} {hh:02}:{mi:02}:{ss:02}"));
        }
    }
    cands.push(format!("{y}.{m:02}.{d:02} {hh:02}:{mi:02}:{ss:02}"));
    // Formats of the later periods, drawn one time in three from their first year on (the
    // share does not shrink as the older list grows).
    let mut later: Vec<String> = Vec::new();
    if year >= 2020 {
        later.push(format!("{d} {mon} {y} {hh:02}:{mi:02}"));
        later.push(format!(
            "{} {mon} {d:02} {y} {h12}:{mi:02}{ampm_lower}",
            DAYS[t.weekday()],
        ));
    }
    if year >= 2021 {
        later.push(format!("{y}-{m:02}-{d:02}T{hh:02}:{mi:02}:{ss:02}"));
    }
    if !later.is_empty() && rng.gen_bool(1.0 / 3.0) {
        cands = later;
    }
    let s = cands.choose(rng).unwrap().clone();
    // Some printers put date and time on separate lines.
    if rng.gen_bool(0.15) {
        if let Some((a, b)) = s.rsplit_once(' ').filter(|(_, b)| b.contains(':')) {
            return vec![a.trim().to_string(), b.to_string()];
        }
    }
    vec![s]
}

pub(crate) fn render(rng: &mut ChaCha8Rng, r: &Receipt, year: u16) -> String {
    let c = r.country;
    let mut layouts = vec![Layout::Columns, Layout::Sroie, Layout::Table];
    if year >= 2020 {
        layouts.push(Layout::Compact);
        layouts.push(Layout::Compact);
    }
    if c == Country::My {
        layouts.push(Layout::Sroie); // SROIE's home
    }
    let layout = *layouts.choose(rng).unwrap();
    let st = Style {
        width: rng.gen_range(32..=48),
        upper: rng.gen_bool(0.5),
        symbol_on_amounts: rng.gen_bool(0.15),
        thousands: rng.gen_bool(0.7),
    };
    let w = st.width;
    let mut out: Vec<String> = Vec::new();
    let up = |s: &str| {
        if st.upper {
            s.to_uppercase()
        } else {
            s.to_string()
        }
    };

    // Header.
    let centered = rng.gen_bool(0.6);
    let head = |s: &str| {
        if centered {
            center(s, w)
        } else {
            s.to_string()
        }
    };
    out.push(head(&r.name));
    if c == Country::My && rng.gen_bool(0.5) {
        out.push(head(&format!(
            "(CO. REG: {}-{})",
            rng.gen_range(100000..999999),
            ['A', 'D', 'K', 'M', 'X'][rng.gen_range(0..5)]
        )));
    }
    for l in &r.address_lines {
        out.push(head(l));
    }
    let tel = ["TEL: ", "Tel. ", "Phone: ", "Ph ", ""][rng.gen_range(0..5)];
    out.push(head(&format!("{tel}{}", r.phone)));
    if let Some(id) = &r.tax_id {
        out.push(head(id));
    }
    if matches!(c, Country::My | Country::Au) && rng.gen_bool(0.7) {
        out.push(head("TAX INVOICE"));
    } else if rng.gen_bool(0.3) {
        out.push(head(&up(if c == Country::De {
            "Kassenbon"
        } else {
            "Sales Receipt"
        })));
    }
    if rng.gen_bool(0.2) {
        out.push(String::new());
    }
    let dates = date_lines(rng, c, &r.ts, year);
    let date_at_bottom = c == Country::De && rng.gen_bool(0.5) || rng.gen_bool(0.1);
    let meta = match if c == Country::De {
        3
    } else {
        rng.gen_range(0..3)
    } {
        0 => format!(
            "{} {:04}  {} {:02}  {}: {}",
            up("Store"),
            r.receipt_no % 10000,
            up("Reg"),
            r.till,
            up("Cashier"),
            r.cashier
        ),
        1 => format!(
            "{}: {}{:06}",
            up("Invoice No"),
            if c == Country::My { "CS" } else { "" },
            r.receipt_no
        ),
        2 => format!(
            "{} #{}  {} {}",
            up("Receipt"),
            r.receipt_no,
            up("Till"),
            r.till
        ),
        _ => lr(
            &format!("{} {}", up("Bon-Nr"), r.receipt_no),
            &format!("{} {}  {} {}", up("Kasse"), r.till, up("Bed."), r.cashier),
            w,
        ),
    };
    out.push(meta);
    if c != Country::De && rng.gen_bool(0.4) {
        out.push(format!("{}: {}", up("Cashier"), r.cashier));
    }
    if !date_at_bottom {
        out.extend(dates.iter().cloned());
    }
    let rule = ["-", "=", "*", "."][rng.gen_range(0..4)].repeat(w);
    out.push(rule.clone());

    // Items.
    let amt = |cents: i64| {
        if st.symbol_on_amounts {
            cur(c, cents, st.thousands)
        } else {
            num(c, cents, st.thousands)
        }
    };
    let at = |it: &Item| {
        let u = unit_suffix(it.unit);
        let per = if u.is_empty() {
            String::new()
        } else {
            format!("/{u}")
        };
        format!(
            "{}{} @ {}{per}",
            qty_str(c, it.qty_milli),
            if u.is_empty() {
                String::new()
            } else {
                format!(" {u}")
            },
            num(c, it.price, false)
        )
    };
    match layout {
        Layout::Columns => {
            for it in &r.items {
                if it.qty_milli == 1000 && it.unit == Unit::Each {
                    out.push(lr(&it.name, &amt(it.amount), w));
                } else if rng.gen_bool(0.5) {
                    out.push(format!("  {}", at(it)));
                    out.push(lr(&it.name, &amt(it.amount), w));
                } else {
                    out.push(lr(&it.name, &amt(it.amount), w));
                    out.push(format!("  {}", at(it)));
                }
            }
        }
        Layout::Sroie => {
            out.push(lr(&up("Description"), "", w).trim_end().to_string());
            out.push(lr(
                &format!("{}   {}", up("Qty"), up("U/Price")),
                &up("Amount"),
                w,
            ));
            for it in &r.items {
                out.push(it.name.clone());
                let code = if c == Country::My {
                    ["", " SR", " ZRL"][rng.gen_range(0..2)]
                } else {
                    ""
                };
                out.push(lr(
                    &format!("{} x {}", qty_str(c, it.qty_milli), num(c, it.price, false)),
                    &format!("{}{code}", amt(it.amount)),
                    w,
                ));
            }
        }
        Layout::Table => {
            let longest = r
                .items
                .iter()
                .map(|i| i.name.chars().count())
                .max()
                .unwrap_or(0);
            let w2 = w.saturating_sub(23).max(longest + 1);
            out.push(format!(
                "{:<5}{:<w2$}{:>9}{:>9}",
                up("Qty"),
                up("Item"),
                up("Price"),
                up("Amount")
            ));
            for it in &r.items {
                out.push(format!(
                    "{:<5}{:<w2$}{:>9}{:>9}",
                    qty_str(c, it.qty_milli),
                    it.name,
                    num(c, it.price, false),
                    amt(it.amount),
                ));
            }
        }
        Layout::Compact => {
            for it in &r.items {
                let left = if it.unit == Unit::Each {
                    format!(
                        "{}x {} @{}",
                        qty_str(c, it.qty_milli),
                        it.name,
                        num(c, it.price, false)
                    )
                } else {
                    format!("{} {}", it.name, at(it))
                };
                out.push(lr(&left, &amt(it.amount), w));
            }
        }
    }
    if rng.gen_bool(0.3) {
        let n: i64 = r
            .items
            .iter()
            .map(|i| {
                if i.unit == Unit::Each {
                    i.qty_milli / 1000
                } else {
                    1
                }
            })
            .sum();
        out.push(format!(
            "{}: {n}",
            up(if c == Country::De {
                "Anzahl Artikel"
            } else {
                "Item count"
            })
        ));
    }
    out.push(rule.clone());

    // Totals.
    let t = |cents: i64| cur(c, cents, st.thousands);
    let show_sub = r.discount.is_some() || !r.tax_included || rng.gen_bool(0.6);
    if show_sub {
        let lab = match (c, layout) {
            (Country::De, _) => "Zwischensumme".to_string(),
            (Country::My, Layout::Sroie) if !r.taxes.is_empty() => {
                format!("TOTAL EXCL {}", r.taxes[0].name)
            }
            _ => up(["Subtotal", "Sub Total", "Sub-total"][rng.gen_range(0..3)]),
        };
        out.push(lr(&lab, &amt(r.subtotal), w));
    }
    if let Some(d) = &r.discount {
        out.push(lr(&up(&d.label), &amt(-d.amount), w));
    }
    let rate = |x: i64| {
        let s = format!("{}", x as f64 / 1000.0);
        if c == Country::De {
            s.replace('.', ",")
        } else {
            s
        }
    };
    if !r.tax_included {
        for tax in &r.taxes {
            out.push(lr(
                &format!("{} {}%", tax.name, rate(tax.rate)),
                &amt(tax.amount),
                w,
            ));
        }
    }
    let total_label = match c {
        Country::De => ["SUMME", "Summe EUR", "Gesamt"][rng.gen_range(0..3)].to_string(),
        Country::My if !r.taxes.is_empty() && rng.gen_bool(0.5) => {
            format!("TOTAL INCL {}", r.taxes[0].name)
        }
        _ => up(["Total", "Total Due", "Amount Due", "Balance Due"][rng.gen_range(0..4)]),
    };
    out.push(lr(&total_label, &t(r.total), w));
    if r.tax_included && !r.taxes.is_empty() {
        match c {
            Country::De => {
                out.push(format!(
                    "{:<10}{:>9}{:>9}{:>9}",
                    "MwSt%", "Netto", "MwSt", "Brutto"
                ));
                for tax in &r.taxes {
                    let gross = tax.base;
                    out.push(format!(
                        "{:<10}{:>9}{:>9}{:>9}",
                        format!("{}%", rate(tax.rate)),
                        num(c, gross - tax.amount, false),
                        num(c, tax.amount, false),
                        num(c, gross, false)
                    ));
                }
            }
            Country::Au => {
                for tax in &r.taxes {
                    let l = [
                        "Total includes GST {r}%",
                        "GST {r}% INCLUDED",
                        "Incl. GST {r}%",
                    ][rng.gen_range(0..3)]
                    .replace("{r}", &rate(tax.rate));
                    out.push(lr(&l, &t(tax.amount), w));
                }
            }
            _ => {
                for tax in &r.taxes {
                    out.push(lr(
                        &format!("{} @ {}% incl.", tax.name, rate(tax.rate)),
                        &amt(tax.amount),
                        w,
                    ));
                }
            }
        }
    }

    // Payment.
    match r.pay {
        Pay::Cash => {
            let tendered = r.tendered.unwrap_or(r.total);
            out.push(lr(
                &up(if c == Country::De { "Bar" } else { "Cash" }),
                &amt(tendered),
                w,
            ));
            out.push(lr(
                &up(if c == Country::De {
                    "Rückgeld"
                } else {
                    "Change"
                }),
                &amt(tendered - r.total),
                w,
            ));
        }
        p => {
            let last4 = r.last4.as_deref().unwrap_or("0000");
            let brand = match p {
                Pay::Visa => "VISA",
                Pay::Mastercard => "MASTERCARD",
                Pay::Amex => "AMEX",
                Pay::Debit => match c {
                    Country::Ca => "INTERAC",
                    Country::Au => "EFTPOS",
                    Country::De => "girocard",
                    Country::My => "MyDebit",
                    _ => "DEBIT",
                },
                _ => ["APPLE PAY", "GOOGLE PAY", "Contactless Mobile"][rng.gen_range(0..3)],
            };
            let masked = match rng.gen_range(0..3) {
                0 => format!("************{last4}"),
                1 => format!("XXXX XXXX XXXX {last4}"),
                _ => format!("**** {last4}"),
            };
            out.push(lr(brand, &amt(r.total), w));
            out.push(format!("{} {masked}", up("Card")));
            if rng.gen_bool(0.6) {
                out.push(format!(
                    "{} {:06}  {}",
                    up("Auth code:"),
                    rng.gen_range(0..1_000_000),
                    up("Approved")
                ));
            }
        }
    }
    if date_at_bottom {
        out.extend(dates);
    }

    // Footer.
    let mut foot: Vec<&str> = match c {
        Country::De => vec!["Vielen Dank für Ihren Einkauf!", "Bitte Bon aufbewahren"],
        Country::My => vec![
            "THANK YOU. PLEASE COME AGAIN.",
            "TERIMA KASIH",
            "GOODS SOLD ARE NOT RETURNABLE",
        ],
        _ => vec![
            "THANK YOU!",
            "Thank you for shopping with us",
            "Please come again",
            "Returns within 30 days with receipt",
        ],
    };
    if year >= 2020 {
        foot.push("Scan the QR code for your e-receipt");
    }
    foot.shuffle(rng);
    for f in foot.iter().take(rng.gen_range(1..=2)) {
        out.push(center(f, w));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_formats() {
        assert_eq!(num(Country::Us, 123456, true), "1,234.56");
        assert_eq!(num(Country::Us, 123456789, true), "1,234,567.89");
        assert_eq!(num(Country::Us, 123456, false), "1234.56");
        assert_eq!(num(Country::De, 123456, true), "1.234,56");
        assert_eq!(num(Country::Gb, -5, true), "-0.05");
        assert_eq!(cur(Country::My, 900, true), "RM 9.00");
        assert_eq!(cur(Country::De, 1234, true), "12,34 €");
        assert_eq!(qty_str(Country::De, 452), "0,452");
        assert_eq!(lr("A", "B", 5), "A   B");
        assert_eq!(lr("LONG", "NAME", 5), "LONG  NAME");
    }
}
