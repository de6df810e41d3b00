//! Validators: what tells a card number from any 16 digits. Each uses the maintained crate made
//! for it where one exists (card-validate for issuer ranges and Luhn, iban_validate for the
//! ISO 13616 check digits and each country's length, rlibphonenumber for libphonenumber's
//! plans);
//! the US SSN and UK NINO rules are the issuers' published ones, too small for a crate.

use std::str::FromStr;

use rlibphonenumber::PHONE_NUMBER_UTIL;
use rlibphonenumber::enums::Region;

/// The countries a national-form number (no `+`) is tried in, in order. The international
/// form (`+44 20...`, `0044 20...`) names its own country and is checked against every plan.
pub const PHONE_REGIONS: [Region; 10] = [
    Region::US,
    Region::GB,
    Region::DE,
    Region::FR,
    Region::IN,
    Region::CA,
    Region::AU,
    Region::ES,
    Region::IT,
    Region::NL,
];

/// A payment card: a known issuer's range and length, and the Luhn check digit; or, for the
/// ranges and lengths card-validate does not list (19-digit Visa, 12-digit Maestro, UATP),
/// 12-19 digits under a card industry's first digit (1-6, ISO/IEC 7812) that pass Luhn.
pub fn card(digits: &str) -> bool {
    card_validate::Validate::from(digits).is_ok()
        || ((12..=19).contains(&digits.len())
            && matches!(digits.as_bytes().first(), Some(b'1'..=b'6'))
            && card_validate::Validate::is_luhn_valid(digits))
}

/// An IBAN in its compact form (no spaces): country, check digits (mod 97) and the country's
/// BBAN format.
pub fn iban(compact: &str) -> bool {
    iban::Iban::from_str(compact).is_ok()
}

/// How sure a phone-shaped text is a phone number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phone {
    /// A number some plan assigns (libphonenumber's "valid").
    Valid,
    /// Parses as a number of a plausible length for one of the countries, but no plan
    /// assigns it (a made-up or example number).
    Possible,
    No,
}

/// `text` as a phone number: international forms against every plan, national forms against
/// [`PHONE_REGIONS`]. With `possible_will_do`, the first country whose plan parses it answers
/// (one parse instead of one per country, for a caller that keeps possible numbers anyway).
pub fn phone(text: &str, possible_will_do: bool) -> Phone {
    let international = text.strip_prefix("00").map(|rest| format!("+{rest}"));
    let (text, regions): (&str, &[Region]) = match &international {
        Some(plus) => (plus, &[]),
        None if text.starts_with('+') => (text, &[]),
        None => (text, &PHONE_REGIONS),
    };
    let mut best = Phone::No;
    if regions.is_empty() {
        if let Ok(n) = PHONE_NUMBER_UTIL.parse(text, None) {
            best = if n.is_valid() {
                Phone::Valid
            } else {
                Phone::Possible
            };
        }
        return best;
    }
    for region in regions {
        if let Ok(n) = PHONE_NUMBER_UTIL.parse(text, Some(*region)) {
            if n.is_valid() {
                return Phone::Valid;
            }
            if possible_will_do {
                return Phone::Possible;
            }
            best = Phone::Possible;
        }
    }
    best
}

/// A US Social Security number as the SSA issues them: area not 000, 666 or 9xx, group not
/// 00, serial not 0000. Takes the nine digits.
pub fn ssn(digits: &str) -> bool {
    let d = digits.as_bytes();
    if d.len() != 9 || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let (area, group, serial) = (&digits[..3], &digits[3..5], &digits[5..]);
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

/// A UK National Insurance number's prefix (HMRC's rules): neither letter D, F, I, Q, U or
/// V, the second not O, and not one of the prefixes never issued.
pub fn nino_prefix(prefix: &str) -> bool {
    let p = prefix.as_bytes();
    if p.len() != 2 {
        return false;
    }
    let bad = |c: u8| matches!(c, b'D' | b'F' | b'I' | b'Q' | b'U' | b'V');
    !bad(p[0])
        && !bad(p[1])
        && p[1] != b'O'
        && !matches!(prefix, "BG" | "GB" | "KN" | "NK" | "NT" | "TN" | "ZZ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_need_an_issuer_and_luhn() {
        assert!(card("4111111111111111"));
        assert!(card("378282246310005"));
        assert!(!card("4111111111111112"), "Luhn");
        assert!(
            !card("9234567812345673"),
            "no card industry, though Luhn holds"
        );
        assert!(
            card("6304000000000000000") && card("2223000048400011"),
            "beyond the crate's ranges"
        );
    }

    #[test]
    fn ibans_need_their_check_digits() {
        assert!(iban("DE89370400440532013000"));
        assert!(iban("GB82WEST12345698765432"));
        assert!(!iban("DE89370400440532013001"));
        assert!(!iban("XX89370400440532013000"));
    }

    #[test]
    fn phones_are_told_valid_possible_or_not() {
        assert_eq!(phone("+44 20 7946 0018", false), Phone::Valid);
        assert_eq!(phone("0044 20 7946 0018", false), Phone::Valid);
        assert_eq!(phone("(212) 555-0123", false), Phone::Valid);
        assert_eq!(phone("+999 12 34", true), Phone::No);
    }

    #[test]
    fn ssn_and_nino_rules() {
        assert!(ssn("078051120"));
        assert!(!ssn("666051120") && !ssn("900051120") && !ssn("078001120"));
        assert!(nino_prefix("AB") && !nino_prefix("GB") && !nino_prefix("DA"));
    }
}
