//! Card numbers: `ZG` + issue year + 7-digit sequence + an ISO 7064 MOD 11-2 check
//! character (the scheme of the Chinese ID number), e.g. `ZG202600001230`.

/// The ISO 7064 MOD 11-2 check character of a string of digits (`0`–`9` or `X`).
pub fn mod11_2(digits: &str) -> Option<char> {
    let n = u32::try_from(digits.len()).ok()?;
    let mut sum = 0u32;
    for (i, c) in digits.chars().enumerate() {
        let d = c.to_digit(10)?;
        let weight = (1u32 << ((n - u32::try_from(i).ok()?) % 10)) % 11;
        // 2^k mod 11 repeats every 10 steps, so the shift stays small.
        sum += d * weight;
    }
    "10X98765432".chars().nth(usize::try_from(sum % 11).ok()?)
}

pub fn format(year: i32, sequence: u32) -> String {
    let body = format!("{year:04}{sequence:07}");
    let check = mod11_2(&body).unwrap_or('0');
    format!("ZG{body}{check}")
}

/// Whether `s` is a well-formed card number with a correct check character.
pub fn is_valid(s: &str) -> bool {
    s.len() == 14 && s.starts_with("ZG") && s[2..13].bytes().all(|b| b.is_ascii_digit()) && mod11_2(&s[2..13]) == s.chars().nth(13)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_example() {
        assert_eq!(format(2026, 123), "ZG202600001230");
        assert!(is_valid("ZG202600001230"));
        assert!(!is_valid("ZG202600001231"));
        assert!(!is_valid("ZG20260000123"));
    }

    #[test]
    fn matches_the_id_number_check_digit() {
        // A published sample ID number: 11010519491231002X.
        assert_eq!(mod11_2("11010519491231002"), Some('X'));
        assert_eq!(mod11_2("44052418800101001"), Some('4'));
    }
}
