//! Shell glob patterns (`*`, `?`, `\*`, `\?`, `\\`) for `${v#p}` and friends.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    Star,
    Any,
    Lit(char),
}

/// A compiled glob.
#[derive(Clone, Debug)]
pub(crate) struct Pattern(Vec<Tok>);

impl Pattern {
    /// Compile `p`; a backslash before `}` or `/` is dropped, before `*`, `?`
    /// or `\` makes a literal, before anything else is an error.
    pub(crate) fn compile(p: &str) -> Result<Self, String> {
        let chars: Vec<char> = p.chars().collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' => out.push(Tok::Star),
                '?' => out.push(Tok::Any),
                '\\' => match chars.get(i + 1) {
                    Some('}' | '/') => {}
                    Some(c @ ('*' | '?' | '\\')) => {
                        out.push(Tok::Lit(*c));
                        i += 1;
                    }
                    Some(c) => return Err(format!("invalid escape '\\{c}'")),
                    None => return Err("invalid escape '\\'".into()),
                },
                c => out.push(Tok::Lit(c)),
            }
            i += 1;
        }
        Ok(Pattern(out))
    }

    /// Does the whole of `s` match?
    fn matches(&self, s: &[char]) -> bool {
        let p = &self.0;
        let (mut pi, mut si) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while si < s.len() {
            match p.get(pi) {
                Some(Tok::Star) => {
                    star = Some((pi, si));
                    pi += 1;
                }
                Some(Tok::Any) => {
                    pi += 1;
                    si += 1;
                }
                Some(Tok::Lit(c)) if *c == s[si] => {
                    pi += 1;
                    si += 1;
                }
                _ => match star {
                    Some((sp, ss)) => {
                        pi = sp + 1;
                        si = ss + 1;
                        star = Some((sp, ss + 1));
                    }
                    None => return false,
                },
            }
        }
        p[pi.min(p.len())..].iter().all(|t| *t == Tok::Star)
    }

    pub(crate) fn trim_prefix(&self, value: &str, greedy: bool) -> String {
        let v: Vec<char> = value.chars().collect();
        let mut hit = None;
        for i in 0..=v.len() {
            if self.matches(&v[..i]) {
                hit = Some(i);
                if !greedy {
                    break;
                }
            }
        }
        match hit {
            Some(i) => v[i..].iter().collect(),
            None => value.to_string(),
        }
    }

    pub(crate) fn trim_suffix(&self, value: &str, greedy: bool) -> String {
        let v: Vec<char> = value.chars().collect();
        let mut hit = None;
        for i in (0..=v.len()).rev() {
            if self.matches(&v[i..]) {
                hit = Some(i);
                if !greedy {
                    break;
                }
            }
        }
        match hit {
            Some(i) => v[..i].iter().collect(),
            None => value.to_string(),
        }
    }

    /// Longest match starting at `start`, as a length.
    fn longest_at(&self, v: &[char], start: usize) -> Option<usize> {
        (start..=v.len())
            .rev()
            .find(|&end| self.matches(&v[start..end]))
            .map(|end| end - start)
    }

    pub(crate) fn replace(&self, value: &str, rep: &str, all: bool) -> String {
        let v: Vec<char> = value.chars().collect();
        let mut out = String::new();
        let mut pos = 0;
        let mut last_end: Option<usize> = None;
        let mut done = false;
        while pos <= v.len() {
            let m = if done { None } else { self.longest_at(&v, pos) };
            match m {
                Some(0) if last_end == Some(pos) => {}
                Some(len) => {
                    out.push_str(rep);
                    last_end = Some(pos + len);
                    if !all {
                        done = true;
                    }
                    if len > 0 {
                        pos += len;
                        continue;
                    }
                }
                None => {}
            }
            if let Some(c) = v.get(pos) {
                out.push(*c);
            }
            pos += 1;
        }
        out
    }
}
