//! The resident identity card number (GB 11643-1999): 6-digit region, 8-digit birth
//! date, 3-digit sequence, and a MOD 11-2 check character.

use chrono::{Datelike, NaiveDate};

use crate::cards::number::mod11_2;

#[derive(Debug, PartialEq, Eq)]
pub enum IdNumberError {
    Format,
    BirthDate,
    CheckDigit,
}

/// Validates and normalises (upper-case `X`) an ID number; `today` bounds the birth date.
pub fn parse(raw: &str, today: NaiveDate) -> Result<String, IdNumberError> {
    let id = raw.trim().to_uppercase();
    let bytes = id.as_bytes();
    if bytes.len() != 18
        || !bytes[..17].iter().all(u8::is_ascii_digit)
        || !(bytes[17].is_ascii_digit() || bytes[17] == b'X')
        || bytes[0] == b'0'
    {
        return Err(IdNumberError::Format);
    }
    let birth = NaiveDate::parse_from_str(&id[6..14], "%Y%m%d").map_err(|_| IdNumberError::BirthDate)?;
    if birth > today || birth.year() < today.year() - 120 {
        return Err(IdNumberError::BirthDate);
    }
    if mod11_2(&id[..17]) != Some(char::from(bytes[17])) {
        return Err(IdNumberError::CheckDigit);
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 27).unwrap_or_default()
    }

    #[test]
    fn valid_numbers_pass_and_normalise() {
        assert_eq!(parse("411302199001011236", today()), Ok("411302199001011236".into()));
        assert_eq!(parse(" 11010519491231002x ", today()), Ok("11010519491231002X".into()));
    }

    #[test]
    fn each_kind_of_error() {
        assert_eq!(parse("411302199001011237", today()), Err(IdNumberError::CheckDigit));
        assert_eq!(parse("411302199002301236", today()), Err(IdNumberError::BirthDate)); // 30 Feb
        assert_eq!(parse("411302203001011236", today()), Err(IdNumberError::BirthDate)); // born in 2030
        assert_eq!(parse("411302180001011236", today()), Err(IdNumberError::BirthDate)); // 226 years old
        assert_eq!(parse("41130219900101123", today()), Err(IdNumberError::Format));
        assert_eq!(parse("41130219900101123Y", today()), Err(IdNumberError::Format));
        assert_eq!(parse("011302199001011236", today()), Err(IdNumberError::Format));
    }
}
