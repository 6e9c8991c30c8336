//! Generated structured PII with valid checksums, embedded in support sentences, plus near-misses.
//!
//! Guarantee: every positive value is valid for its kind (Luhn, mod-97, allocation rules, DNI letter) and
//! every near-miss differs from a valid value only by its check digit, so recall measures detection and
//! the near-miss false-positive rate measures validation. Deterministic (fixed-seed xorshift).

use turnpike_guard::PiiKind;

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn digits(&mut self, n: usize) -> String {
        (0..n).map(|_| char::from(b'0' + self.below(10) as u8)).collect()
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

fn luhn_digit(body: &str) -> u32 {
    let sum: u32 = body
        .chars()
        .rev()
        .filter_map(|c| c.to_digit(10))
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 0 {
                if d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

fn group(s: &str, n: usize, sep: &str) -> String {
    s.as_bytes().chunks(n).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(sep)
}

fn iban_check(country: &str, bban: &str) -> u32 {
    let s = format!("{bban}{country}00");
    let mut rem = 0u64;
    for c in s.chars() {
        let v = c.to_digit(36).unwrap_or(0) as u64;
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    98 - rem as u32
}

/// (kind, value, near-miss) for one generated item.
pub fn value(rng: &mut Rng, kind: PiiKind) -> (String, Option<String>) {
    match kind {
        PiiKind::Card => {
            let (prefix, len) = [("4", 16), ("51", 16), ("55", 16), ("37", 15), ("6011", 16)][rng.below(5) as usize];
            let body = format!("{prefix}{}", rng.digits(len - 1 - prefix.len()));
            let d = luhn_digit(&body);
            let sep = rng.pick(&["", " ", "-"]);
            (group(&format!("{body}{d}"), 4, sep), Some(group(&format!("{body}{}", (d + 1) % 10), 4, sep)))
        }
        PiiKind::Iban => {
            let (cc, bban) = match rng.below(4) {
                0 => ("DE", rng.digits(18)),
                1 => ("GB", format!("{}{}", rng.pick(&["WEST", "BARC", "NWBK"]), rng.digits(14))),
                2 => ("FR", rng.digits(23)),
                _ => ("NL", format!("{}{}", rng.pick(&["ABNA", "INGB", "RABO"]), rng.digits(10))),
            };
            let check = iban_check(cc, &bban);
            let good = format!("{cc}{check:02}{bban}");
            let bad = format!("{cc}{:02}{bban}", (check + 1) % 100);
            if rng.below(2) == 0 {
                (group(&good, 4, " "), Some(group(&bad, 4, " ")))
            } else {
                (good, Some(bad))
            }
        }
        PiiKind::UsSsn => {
            let area = 1 + rng.below(665);
            let area = if area == 666 { 667 } else { area };
            let v = format!("{area:03}-{:02}-{:04}", 1 + rng.below(99), 1 + rng.below(9999));
            (v, Some(format!("000-{:02}-{:04}", 1 + rng.below(99), 1 + rng.below(9999))))
        }
        PiiKind::UkNino => {
            let p = rng.pick(&["AB", "CE", "JH", "PR", "SW", "WX", "ZA", "HT"]);
            let d = rng.digits(6);
            let s = rng.pick(&["A", "B", "C", "D"]);
            let sp = rng.below(2) == 0;
            let v = if sp { format!("{p} {} {s}", group(&d, 2, " ")) } else { format!("{p}{d}{s}") };
            (v, Some(format!("GB{d}{s}")))
        }
        PiiKind::EsDni => {
            const L: &[u8] = b"TRWAGMYFPDXBNJZSQVHLCKE";
            let n = 10_000_000 + rng.below(89_999_999);
            let l = L[(n % 23) as usize] as char;
            let wrong = L[((n + 1) % 23) as usize] as char;
            (format!("{n}{l}"), Some(format!("{n}{wrong}")))
        }
        PiiKind::Email => {
            let user = rng.pick(&["jane.doe", "m.rossi", "kim_lee", "alex+shop", "o.brien", "zhang.wei88"]);
            let dom = rng.pick(&["example.com", "mail.example.org", "post.example.co.uk", "example.de"]);
            (format!("{user}{}@{dom}", rng.below(100)), None)
        }
        PiiKind::Phone => {
            let v = match rng.below(7) {
                0 => format!("+44 20 {} {}", rng.digits(4), rng.digits(4)),
                1 => format!("+1 ({}) {}-{}", 200 + rng.below(799), rng.digits(3), rng.digits(4)),
                2 => format!("+49 30 {}", rng.digits(8)),
                3 => format!("+33 1 {} {} {} {}", rng.digits(2), rng.digits(2), rng.digits(2), rng.digits(2)),
                4 => format!("0044 7700 {}", rng.digits(6)),
                5 => format!("({}) {}-{}", 200 + rng.below(799), rng.digits(3), rng.digits(4)),
                _ => format!("+91 {} {}", 70000 + rng.below(29999), rng.digits(5)),
            };
            (v, None)
        }
        PiiKind::Address | PiiKind::Name => (String::new(), None),
    }
}

pub const TEMPLATES: &[&str] = &[
    "Hi, my details are {} if you need them.",
    "Please refund it to {} as soon as possible.",
    "You can reach me via {}.",
    "{} is the one on my account.",
    "I already gave you {}, why ask again?",
];

pub const NEGATIVE_SENTENCES: &[&str] = &[
    "My order number is 1234567812345679 and it is late.",
    "The total was $1,249.99 on 12/03/2024.",
    "Tracking code 9400 1000 0000 0000 0000 00 shows no update.",
    "Model XR-2000 serial 55512345 stopped working after 3 weeks.",
    "I ordered 3 items at 19.99 each on 2024-05-14.",
];
