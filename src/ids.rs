//! Prefixed identifiers: `evt_…` for accepted events, `con_…` for connections, `dlv_…` for
//! deliveries (one card to one connection). Each is a ULID in lower case behind its prefix, so
//! ids sort by creation time and say what they name when they turn up in a log or a URL.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A new id, unique and later than every id made before it in this process.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self(format!("{}{}", $prefix, ulid::Ulid::new().to_string().to_lowercase()))
            }

            /// Accepts a string that has this kind's prefix and a ULID after it.
            pub fn parse(s: &str) -> Option<Self> {
                let rest = s.strip_prefix($prefix)?;
                ulid::Ulid::from_string(rest).ok()?;
                Some(Self(s.to_string()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(
    /// An accepted upstream event.
    EventId,
    "evt_"
);
prefixed_id!(
    /// A connection: a webhook URL cards are delivered to.
    ConnectionId,
    "con_"
);
prefixed_id!(
    /// One card on its way to one connection.
    DeliveryId,
    "dlv_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_other_prefixes() {
        let id = ConnectionId::new();
        assert!(id.as_str().starts_with("con_"));
        assert_eq!(ConnectionId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(EventId::parse(id.as_str()), None);
        assert_eq!(ConnectionId::parse("con_nope"), None);
    }
}
