//! How personal data is shown to anyone but its owner (SPEC §7).

/// `4113**********123X`: the first four and last four characters.
pub fn id_number(id: &str) -> String {
    keep_ends(id, 4, 4)
}

/// `138****5678`: the first three and last four digits.
pub fn phone(phone: &str) -> String {
    keep_ends(phone, 3, 4)
}

/// `张*明`: first and last character; a two-character name keeps the first (`张*`).
pub fn name(name: &str) -> String {
    let chars: Vec<char> = name.trim().chars().collect();
    match chars.len() {
        0 => String::new(),
        1 => "*".to_owned(),
        2 => format!("{}*", chars[0]),
        n => format!("{}{}{}", chars[0], "*".repeat(n - 2), chars[n - 1]),
    }
}

fn keep_ends(s: &str, head: usize, tail: usize) -> String {
    let chars: Vec<char> = s.trim().chars().collect();
    if chars.len() <= head + tail {
        return "*".repeat(chars.len());
    }
    let mut out: String = chars[..head].iter().collect();
    out.push_str(&"*".repeat(chars.len() - head - tail));
    out.extend(&chars[chars.len() - tail..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_match_the_spec() {
        assert_eq!(id_number("41130219900101123X"), "4113**********123X");
        assert_eq!(phone("13812345678"), "138****5678");
        assert_eq!(name("张三明"), "张*明");
        assert_eq!(name("张三"), "张*");
        assert_eq!(name("欧阳娜娜"), "欧**娜");
        assert_eq!(phone("123"), "***");
    }
}
