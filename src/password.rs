//! New passwords for `PasswordReset`: generated here so the operator can store them in the
//! password Secret before Graph ever sees them.
//!
//! Entra's rules for cloud accounts: 8 to 256 characters, at least three of the four classes
//! (lower case, upper case, digits, symbols), from A–Z, a–z, 0–9 and a set of symbols. We
//! generate 24 characters with all four classes and only symbols that are harmless in shells
//! and YAML. `rand::rng()` is a CSPRNG (ChaCha, seeded and reseeded from the OS).

use rand::Rng as _;
use rand::seq::SliceRandom as _;

use crate::credentials::SecretString;

pub const LENGTH: usize = 24;
const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
const DIGITS: &[u8] = b"23456789";
const SYMBOLS: &[u8] = b"!@#$%^&*-_=+?.:";

/// A fresh password with every character class.
pub fn generate() -> SecretString {
    let mut rng = rand::rng();
    let classes = [UPPER, LOWER, DIGITS, SYMBOLS];
    let all = classes.concat();
    let mut chars: Vec<u8> = classes.iter().map(|set| set[rng.random_range(0..set.len())]).collect();
    while chars.len() < LENGTH {
        chars.push(all[rng.random_range(0..all.len())]);
    }
    chars.shuffle(&mut rng);
    SecretString::new(String::from_utf8(chars).expect("ASCII"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_have_every_class_and_differ() {
        let a = generate();
        let b = generate();
        assert_ne!(a.expose(), b.expose());
        for p in [a.expose(), b.expose()] {
            assert_eq!(p.len(), LENGTH);
            for set in [UPPER, LOWER, DIGITS, SYMBOLS] {
                assert!(p.bytes().any(|c| set.contains(&c)), "every class appears");
            }
        }
    }
}
