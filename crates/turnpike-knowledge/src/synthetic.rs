//! A deterministic synthetic help centre for benchmarks: a home-appliance retailer with 20 products × 2
//! series × 6 article kinds (setup, troubleshooting, care, parts, policy, FAQ), a third each as Markdown,
//! HTML and plain text, 300 to 1,500 words each, from a fixed-seed PRNG, plus customer-style questions.
//! Not test data for quality (its text is repetitive by construction): it sizes indexes and times searches.

use crate::{Format, SourceDoc};

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.below(v.len())]
    }
}

const PRODUCTS: &[&str] = &[
    "kettle",
    "toaster",
    "blender",
    "coffee machine",
    "air fryer",
    "stand mixer",
    "food processor",
    "juicer",
    "slow cooker",
    "rice cooker",
    "microwave",
    "steam iron",
    "vacuum cleaner",
    "cordless vacuum",
    "tower fan",
    "oil heater",
    "dehumidifier",
    "air purifier",
    "hair dryer",
    "electric toothbrush",
];
const SERIES: &[&str] = &["Classic", "Pro"];
const PARTS: &[&str] = &[
    "filter",
    "lid",
    "jug",
    "blade assembly",
    "power cord",
    "base",
    "dust bag",
    "battery",
    "brush head",
    "drip tray",
    "water tank",
    "basket",
    "seal",
    "switch",
    "thermostat",
];
const SYMPTOMS: &[&str] = &[
    "does not switch on",
    "makes a loud noise",
    "leaks water",
    "smells of burning",
    "switches off by itself",
    "shows a flashing red light",
    "does not heat",
    "is slower than before",
    "vibrates strongly",
    "beeps three times",
    "will not charge",
    "loses suction",
    "trips the fuse",
    "gets very hot on the outside",
];
const ACTIONS: &[&str] = &[
    "unplug the appliance and let it cool for 20 minutes",
    "check that the {part} is fitted correctly and clicks into place",
    "clean the {part} under warm running water and let it dry completely",
    "make sure the socket works by plugging in another appliance",
    "descale the appliance following the care guide",
    "reset the appliance by holding the power button for 10 seconds",
    "replace the {part}: spare parts are sold in our shop",
    "remove any packaging or protective film from the {part}",
    "contact our customer care team with the model number and a short video of the fault",
];
const POLICY_SENTENCES: &[&str] = &[
    "You can return the {product} within {days} days of delivery if it is unused and in its original packaging.",
    "The {series} {product} comes with a {years}-year guarantee from the date of delivery.",
    "Register your {product} within 28 days to extend the guarantee by one year at no cost.",
    "Standard delivery of the {product} takes 3 to 5 working days and is free on orders over £40.",
    "Express delivery is available for the {product} if you order before 2 pm on a working day.",
    "We keep spare parts for the {series} {product} for at least {years} years after it is discontinued.",
    "Refunds are issued to the original payment method within 5 working days of receiving your return.",
    "Faulty appliances can be collected free of charge from your home within the guarantee period.",
    "The {part} is not covered by the guarantee when it wears out through normal use.",
    "If the {product} arrives damaged, take photos and contact us within 14 days of delivery.",
    "Trade customers can order the {product} in bulk with a 10% discount on orders of 20 units or more.",
    "The {product} is rated for 220 to 240 volts and must not be used with a travel adapter.",
];
const CARE_SENTENCES: &[&str] = &[
    "Wipe the outside of the {product} with a damp cloth; never immerse the base in water.",
    "The {part} is dishwasher safe on the top rack only.",
    "Clean the {part} once a week to keep the {product} working efficiently.",
    "Store the {product} in a dry place away from direct sunlight.",
    "Do not use abrasive cleaners, bleach or scouring pads on the {part}.",
    "In hard water areas, clean the {part} every {weeks} weeks.",
    "Let the {product} cool down completely before cleaning or storing it.",
    "Check the power cord regularly for damage and stop using the {product} if it is damaged.",
];
const SETUP_SENTENCES: &[&str] = &[
    "Remove all packaging and stickers before using the {product} for the first time.",
    "Place the {product} on a flat, stable, heat-resistant surface at least 10 cm from the wall.",
    "Fit the {part} until it clicks, then plug the {product} into a wall socket.",
    "The first time you use the {product} it may give off a slight smell: this is normal and stops quickly.",
    "Press and hold the power button for 2 seconds to switch the {product} on.",
    "Choose a program with the dial; the display shows the remaining time in minutes.",
    "Connect the {product} to the Brightwave app to receive updates and care reminders.",
];

fn fill(rng: &mut Rng, template: &str, product: &str, series: &str) -> String {
    let part = rng.pick(PARTS);
    template
        .replace("{product}", product)
        .replace("{series}", series)
        .replace("{part}", part)
        .replace("{days}", &[14, 30, 60][rng.below(3)].to_string())
        .replace("{years}", &(2 + rng.below(6)).to_string())
        .replace("{weeks}", &(2 + rng.below(6)).to_string())
}

fn paragraph(rng: &mut Rng, pool: &[&str], product: &str, series: &str) -> String {
    let n = 2 + rng.below(4);
    (0..n)
        .map(|_| {
            let template = rng.pick(pool);
            fill(rng, template, product, series)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One article: (title, sections of (heading, paragraphs)).
fn article(rng: &mut Rng, i: usize) -> (String, String, Vec<(String, Vec<String>)>) {
    let product = PRODUCTS[i % PRODUCTS.len()];
    let series = SERIES[(i / PRODUCTS.len()) % SERIES.len()];
    let model = format!("BW-{}{:03}", &series[..1], i % 997);
    let kind = (i / (PRODUCTS.len() * SERIES.len())) % 6;
    let (slug, title) = match kind {
        0 => ("setup", format!("Setting up your {series} {product} ({model})")),
        1 => ("troubleshooting", format!("{series} {product} troubleshooting ({model})")),
        2 => ("care", format!("Cleaning and caring for your {series} {product}")),
        3 => ("parts", format!("Spare parts for the {series} {product} ({model})")),
        4 => ("guarantee", format!("{series} {product}: guarantee, returns and delivery")),
        _ => ("faq", format!("{series} {product} questions and answers ({model})")),
    };
    let sections = 3 + rng.below(6);
    let mut out = Vec::new();
    for s in 0..sections {
        let (heading, pool): (String, &[&str]) = match kind {
            1 => {
                let symptom = rng.pick(SYMPTOMS);
                let steps: Vec<String> = (0..3 + rng.below(3))
                    .map(|_| {
                        let a = rng.pick(ACTIONS).replace("{part}", rng.pick(PARTS));
                        format!("If the {product} {symptom}, {a}.")
                    })
                    .collect();
                out.push((format!("The {product} {symptom}"), vec![steps.join(" ")]));
                continue;
            }
            0 => (
                format!("Step {}: {}", s + 1, rng.pick(&["unpacking", "first use", "programs", "the app", "safety"])),
                SETUP_SENTENCES,
            ),
            2 => (format!("Cleaning the {}", rng.pick(PARTS)), CARE_SENTENCES),
            3 => (format!("Replacing the {}", rng.pick(PARTS)), CARE_SENTENCES),
            4 => (
                rng.pick(&["Returns", "Guarantee", "Delivery", "Refunds", "Damaged on arrival"]).to_string(),
                POLICY_SENTENCES,
            ),
            _ => (
                format!(
                    "Can I {} the {product}?",
                    rng.pick(&["return", "repair", "clean", "store", "take abroad", "register"])
                ),
                POLICY_SENTENCES,
            ),
        };
        let paras = (0..1 + rng.below(3)).map(|_| paragraph(rng, pool, product, series)).collect();
        out.push((heading, paras));
    }
    (format!("{slug}/{}-{}-{i:04}", series.to_lowercase(), product.replace(' ', "-")), title, out)
}

fn document(rng: &mut Rng, i: usize) -> SourceDoc {
    let (path, title, sections) = article(rng, i);
    match i % 3 {
        0 => {
            let mut t = format!("# {title}\n\n");
            for (h, ps) in sections {
                t.push_str(&format!("## {h}\n\n{}\n\n", ps.join("\n\n")));
            }
            SourceDoc { source: format!("{path}.md"), format: Format::Markdown, text: t }
        }
        1 => {
            let mut t =
                format!("<html><head><title>{title} | Help</title></head><body><nav>Home</nav><h1>{title}</h1>\n");
            for (n, (h, ps)) in sections.into_iter().enumerate() {
                t.push_str(&format!("<h2 id=\"s{n}\">{h}</h2>\n"));
                for p in ps {
                    t.push_str(&format!("<p>{p}</p>\n"));
                }
            }
            t.push_str("<footer>© Brightwave</footer></body></html>\n");
            SourceDoc { source: format!("{path}.html"), format: Format::Html, text: t }
        }
        _ => {
            let mut t = format!("{title}\n\n");
            for (h, ps) in sections {
                t.push_str(&format!("{h}\n\n{}\n\n", ps.join("\n\n")));
            }
            SourceDoc { source: format!("{path}.txt"), format: Format::Text, text: t }
        }
    }
}

pub const QUESTIONS: &[&str] = &[
    "my kettle does not switch on",
    "how do I clean the blender jug",
    "can I return the air fryer after 30 days",
    "the vacuum cleaner loses suction what should I do",
    "where can I buy a new filter for the air purifier",
    "how long is the guarantee on the Pro coffee machine",
    "toaster smells of burning",
    "is the stand mixer bowl dishwasher safe",
    "delivery time for a slow cooker",
    "my cordless vacuum will not charge",
    "the dehumidifier leaks water",
    "can I use the hair dryer abroad with a travel adapter",
    "how do I register my steam iron",
    "refund to my card how many days",
    "juicer vibrates strongly and makes a loud noise",
    "replacement brush head electric toothbrush",
    "rice cooker beeps three times",
    "oil heater trips the fuse",
    "microwave arrived damaged",
    "how to descale the coffee machine in hard water areas",
    "Hi! Where is the power button on the tower fan? I can't find it",
    "do you offer discounts for trade customers buying 20 units",
];

/// `n` documents, the same on every run.
pub fn help_centre(n: usize) -> Vec<SourceDoc> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    (0..n).map(|i| document(&mut rng, i)).collect()
}
