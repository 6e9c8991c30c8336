//! A handoff's urgency, shared by the triggers that set it (turnpike-guard) and the helpdesk connectors that
//! map it onto each vendor's scale (turnpike-helpdesk). Its strings are the schema's (`HandoffRequest.priority`).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
    Urgent,
}

impl Priority {
    /// The schema's string.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }

    /// The schema's string back; anything unknown (an older or newer writer) is `Normal`.
    pub fn parse(text: &str) -> Priority {
        match text.trim().to_ascii_lowercase().as_str() {
            "low" => Priority::Low,
            "high" => Priority::High,
            "urgent" => Priority::Urgent,
            _ => Priority::Normal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_and_unknown_ones_are_normal() {
        for p in [Priority::Low, Priority::Normal, Priority::High, Priority::Urgent] {
            assert_eq!(Priority::parse(p.as_str()), p);
        }
        assert_eq!(Priority::parse(" URGENT "), Priority::Urgent);
        assert_eq!(Priority::parse("critical"), Priority::Normal);
        assert_eq!(Priority::default(), Priority::Normal);
    }
}
