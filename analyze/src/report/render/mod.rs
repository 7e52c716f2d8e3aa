//! The report's renderings: the terminal table (`text`), report.html (`html`), the
//! figures as SVG (`svg`) and as PNG (`png`).

pub mod html;
pub mod png;
pub mod svg;
pub mod text;

/// Text escaped for HTML and SVG, in element content and in quoted attributes alike.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            _ => o.push(c),
        }
    }
    o
}
