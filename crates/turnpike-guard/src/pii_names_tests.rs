//! Unit tests of the gazetteer-based name and address detection and of the phone formats.
use crate::pii::{PiiDetector, PiiKind};
use crate::SessionPii;

fn mask(t: &str) -> String {
    let mut s = SessionPii::default();
    PiiDetector::new().unwrap().mask(t, &PiiKind::ALL, &mut s).0
}

#[test]
fn names_are_found_whatever_their_case_and_without_a_cue() {
    assert_eq!(mask("hello, anna kowalski here"), "hello, [NAME_1] here");
    assert_eq!(mask("My husband Giovanni Rossi ordered it"), "My husband [NAME_1] ordered it");
    assert_eq!(mask("ask JOSÉ GARCÍA about it"), "ask [NAME_1] about it");
}

#[test]
fn names_that_are_english_words_need_a_cue_or_a_capitalised_surname() {
    assert_eq!(
        mask("Please mark the order as paid, I will grant access"),
        "Please mark the order as paid, I will grant access"
    );
    assert_eq!(mask("my name is bill"), "my name is [NAME_1]");
    assert_eq!(mask("I spoke to Mark Price"), "I spoke to [NAME_1]");
    assert_eq!(mask("Regards, Zbigniew"), "Regards, [NAME_1]");
}

#[test]
fn product_and_calendar_words_are_not_names() {
    let t = "My Alexa and the Jordan trainers from Amazon arrived in April via DHL";
    assert_eq!(mask(t), t);
}

#[test]
fn street_addresses_in_several_countries_with_postcode_and_town() {
    assert_eq!(mask("send it to 12 baker street please"), "send it to [ADDRESS_1] please");
    assert_eq!(mask("Hauptstraße 5, 10115 Berlin is my flat"), "[ADDRESS_1] is my flat");
    assert_eq!(mask("j'habite 12 rue de la Paix, 75002 Paris."), "j'habite [ADDRESS_1].");
    assert_eq!(mask("Via Roma 10, Milano"), "[ADDRESS_1], Milano");
    assert_eq!(mask("ul. Polna 12, 00-950 Warszawa"), "[ADDRESS_1]");
}

#[test]
fn numbers_near_ordinary_words_are_not_addresses() {
    for t in ["I bought 3 green lights and 2 way adapters", "Order 5 is on the way", "page 2 of the terms"] {
        assert_eq!(mask(t), t);
    }
}

#[test]
fn international_and_national_phone_formats() {
    for p in
        ["+49-30-12345678", "+1 (415) 555-0134", "+48 123-45-67-89", "(030) 1234567", "07700 900123", "912 345 678"]
    {
        assert_eq!(mask(&format!("call me on {p} today")), "call me on [PHONE_1] today", "{p}");
    }
    assert_eq!(mask("my mobile is 612345678"), "my mobile is [PHONE_1]");
    for t in ["order 612345678 is late", "on 2024-05-14 at 10.30", "SSN-like 000-12-3456"] {
        assert!(!mask(t).contains("[PHONE"), "{t}");
    }
}
