use super::*;

fn cfg(n: usize, seed: u64, year: u16, noise: f64) -> SynthConfig {
    SynthConfig {
        n,
        seed,
        year,
        noise_rate: noise,
        ..Default::default()
    }
}

#[test]
fn same_seed_same_records_and_prefix_property() {
    let a = receipts(&cfg(40, 7, 2020, 0.02));
    let b = receipts(&cfg(40, 7, 2020, 0.02));
    assert_eq!(a, b);
    let small = receipts(&cfg(10, 7, 2020, 0.02));
    assert_eq!(&a[..10], &small[..]);
    let other = receipts(&cfg(10, 8, 2020, 0.02));
    assert_ne!(small, other);
}

#[test]
fn noise_changes_input_but_never_the_truth() {
    let clean = receipts(&cfg(30, 3, 2019, 0.0));
    let noisy = receipts(&cfg(30, 3, 2019, 0.05));
    let mut differing = 0;
    for (c, n) in clean.iter().zip(&noisy) {
        assert_eq!(c.output, n.output);
        differing += (c.input != n.input) as usize;
    }
    assert!(
        differing >= 28,
        "noise 0.05 should touch almost every receipt ({differing}/30)"
    );
}

#[test]
fn every_record_validates_against_the_schema_and_adds_up() {
    let schema = receipts_schema();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    for year in [2017u16, 2019, 2020, 2021, 2024] {
        for r in receipts(&cfg(120, year as u64, year, 0.02)) {
            let errors: Vec<String> = validator
                .iter_errors(&r.output)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{errors:?}\n{}", r.output);
            let errs = arithmetic_errors(&r.output);
            assert!(errs.is_empty(), "{errs:?}\n{}\n{}", r.input, r.output);
            let ts = r.output["timestamp"].as_str().unwrap();
            assert!(ts.starts_with(&format!("{year}-")), "{ts}");
        }
    }
}

#[test]
fn schema_rejects_extra_keys() {
    let validator = jsonschema::validator_for(&receipts_schema()).unwrap();
    let mut v = receipts(&cfg(1, 1, 2019, 0.0))[0].output.clone();
    assert!(validator.is_valid(&v));
    v["phone"] = json!("555");
    assert!(!validator.is_valid(&v));
    let mut v = receipts(&cfg(1, 1, 2019, 0.0))[0].output.clone();
    v["items"][0]["sku"] = json!("1");
    assert!(!validator.is_valid(&v));
}

#[test]
fn schema_admits_only_real_timestamps() {
    let validator = jsonschema::validator_for(&receipts_schema()).unwrap();
    let mut v = receipts(&cfg(1, 1, 2019, 0.0))[0].output.clone();
    for (ts, ok) in [
        ("2020-10-08T22:58", true),
        ("1999-12-31T00:00", true),
        ("2020-02-29T23:59", true),
        ("2020-10-81T22:58", false),
        ("2020-13-08T22:58", false),
        ("2020-00-08T22:58", false),
        ("2020-10-00T22:58", false),
        ("2020-10-08T24:00", false),
        ("2020-10-08T22:60", false),
        ("2020-10-08 22:58", false),
    ] {
        v["timestamp"] = json!(ts);
        assert_eq!(validator.is_valid(&v), ok, "{ts}");
    }
}

#[test]
fn arithmetic_check_catches_a_wrong_total() {
    let mut v = receipts(&cfg(1, 1, 2019, 0.0))[0].output.clone();
    v["total"] = json!(v["total"].as_f64().unwrap() + 0.01);
    assert!(!arithmetic_errors(&v).is_empty());
}

/// With no noise the numbers the truth holds are readable in the text, so the task is learnable.
#[test]
fn clean_text_shows_the_truth() {
    for r in receipts(&cfg(60, 11, 2020, 0.0)) {
        let o = &r.output;
        let de = o["country"] == "DE";
        let money = |v: &Value| {
            let s = format!("{:.2}", v.as_f64().unwrap());
            if de {
                s.replace('.', ",")
            } else {
                s
            }
        };
        let text = r.input.replace(['.', ','], "").replace(['€', '$', '£'], "");
        let total = money(&o["total"]).replace(['.', ','], "");
        assert!(text.contains(&total), "total {total} not in\n{}", r.input);
        assert!(r.input.contains(o["retailer"].as_str().unwrap()));
        assert!(r.input.contains(o["postal_code"].as_str().unwrap()));
        for it in o["items"].as_array().unwrap() {
            assert!(
                r.input.contains(it["name"].as_str().unwrap()),
                "{}",
                it["name"]
            );
        }
        if let Some(l4) = o["card_last4"].as_str() {
            assert!(r.input.contains(l4));
        }
    }
}

#[test]
fn later_period_brings_new_retailers_and_formats() {
    let names = |year| -> std::collections::BTreeSet<String> {
        receipts(&cfg(400, 5, year, 0.0))
            .iter()
            .map(|r| r.output["retailer"].as_str().unwrap().to_lowercase())
            .collect()
    };
    let (y19, y21) = (names(2019), names(2021));
    assert!(y19.iter().all(|n| n != "oat & crema" && n != "voltcharge"));
    assert!(
        y21.iter().any(|n| !y19.contains(n)),
        "2021 should show retailers 2019 never had"
    );
    // Germany's VAT cut: 16% only in the second half of 2020.
    let de = SynthConfig {
        n: 200,
        seed: 1,
        year: 2020,
        countries: vec![Country::De],
        ..Default::default()
    };
    let rates: Vec<(String, f64)> = receipts(&de)
        .iter()
        .flat_map(|r| {
            let ts = r.output["timestamp"].as_str().unwrap().to_string();
            r.output["taxes"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |t| (ts.clone(), t["rate"].as_f64().unwrap()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(rates.iter().any(|(_, r)| *r == 16.0));
    assert!(rates
        .iter()
        .all(|(ts, r)| (*r == 16.0 || *r == 5.0) == (ts.as_str() >= "2020-07")));
    // The day-month-year-name format exists only from 2020.
    let months = [
        "Jan ", "Feb ", "Mar ", "Apr ", "May ", "Jun ", "Jul ", "Aug ", "Sep ", "Oct ", "Nov ",
        "Dec ",
    ];
    let has_d_mon_y = |rs: &[Record]| {
        rs.iter().any(|r| {
            r.input.lines().any(|l| {
                let ws: Vec<&str> = l.split_whitespace().collect();
                ws.len() >= 3
                    && ws[0].parse::<u8>().is_ok()
                    && months.contains(&format!("{} ", ws[1]).as_str())
            })
        })
    };
    assert!(!has_d_mon_y(&receipts(&cfg(300, 2, 2019, 0.0))));
    assert!(has_d_mon_y(&receipts(&cfg(300, 2, 2021, 0.0))));
}

#[test]
fn country_filter_and_postal_formats() {
    let check = |c: Country, ok: fn(&str) -> bool| {
        let cfg = SynthConfig {
            n: 40,
            seed: 9,
            countries: vec![c],
            ..Default::default()
        };
        for r in receipts(&cfg) {
            assert_eq!(r.output["country"], c.code());
            let pc = r.output["postal_code"].as_str().unwrap();
            assert!(ok(pc), "{c:?} postal code {pc}");
            assert!(r.output["address"].as_str().unwrap().contains(pc));
        }
    };
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    check(Country::Us, |s| {
        (s.len() == 5 && s.chars().all(|c| c.is_ascii_digit()))
            || (s.len() == 10 && &s[5..6] == "-")
    });
    check(Country::Ca, |s| {
        let b = s.as_bytes();
        s.len() == 7
            && b[0].is_ascii_uppercase()
            && b[1].is_ascii_digit()
            && b[3] == b' '
            && b[6].is_ascii_digit()
    });
    check(Country::Gb, |s| s.contains(' ') && s.len() <= 8);
    check(Country::De, |s| {
        s.len() == 5 && s.chars().all(|c| c.is_ascii_digit())
    });
    check(Country::My, |s| {
        s.len() == 5 && s.chars().all(|c| c.is_ascii_digit())
    });
    check(Country::Au, |s| {
        s.len() == 4 && s.chars().all(|c| c.is_ascii_digit())
    });
    let _ = digits;
}

#[test]
fn civil_dates_round_trip() {
    for z in [-1000i64, 0, 18262, 18627, 20000] {
        let (y, m, d) = civil_from_days(z);
        assert_eq!(days_from_civil(y, m, d), z);
    }
    assert_eq!(
        days_from_civil(2020, 3, 1) - days_from_civil(2020, 2, 28),
        2
    );
    // 2020-11-29 was a Sunday.
    assert_eq!(
        DateTime {
            y: 2020,
            m: 11,
            d: 29,
            hh: 0,
            mm: 0,
            ss: 0
        }
        .weekday(),
        6
    );
}

#[test]
fn noise_zero_is_identity_and_noise_is_seeded() {
    let text = "TOTAL 10.00\nCASH 20.00";
    let mut r1 = ChaCha8Rng::seed_from_u64(1);
    assert_eq!(add_noise(text, 0.0, &mut r1), text);
    let a = add_noise(text, 0.3, &mut ChaCha8Rng::seed_from_u64(2));
    let b = add_noise(text, 0.3, &mut ChaCha8Rng::seed_from_u64(2));
    assert_eq!(a, b);
    assert_ne!(a, text);
}
