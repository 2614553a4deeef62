//! HTML to plain text for analysis (not for a terminal): the text a reader sees, in reading
//! order, with the line structure of the blocks.
//!
//! html5ever's spec-compliant tokenizer does the hard part: tags, attributes, comments, named
//! and numeric character references (invalid ones become U+FFFD as in a browser), CR/LF
//! normalisation, and the raw-text states of `<script>`, `<style>`, `<title>`, `<textarea>`...
//! (entered when this sink asks for them, as html5ever's tree builder does). No DOM is built:
//! text extraction only needs to know, at each token, whether text is shown, whether it is
//! preformatted, and where blocks begin and end. The state is a handful of counters and flags,
//! so nothing here grows with the nesting depth and nothing recurses.
//!
//! The rules, close to a browser's `innerText`:
//! - whitespace collapses to one space (space, tab, LF, FF and U+00A0), except inside `<pre>`,
//!   `<listing>`, `<xmp>`, `<textarea>` and `<plaintext>`, where it is kept (an LF right after
//!   the start tag is dropped, as the HTML parser does);
//! - a line break at `<br>` (and at the `</br>` mistake, as browsers read it); the start and
//!   end of a block element end the line; paragraphs, headings, block quotes, preformatted text
//!   and `<hr>` stand apart with a blank line;
//! - table cells on one row are separated by a tab; rows are lines;
//! - nothing from `<head>`'s `<title>`, `<script>`, `<style>`, `<template>`, `<noscript>`,
//!   `<iframe>`, `<noembed>`, `<noframes>`, comments, doctypes;
//! - links are their text; an image with a source is its `alt` text (what html2text printed);
//! - removed: NUL, soft hyphens, zero-width spaces and byte order marks (invisible when
//!   rendered); trailing whitespace on each line; more than one blank line in a row; leading and
//!   trailing blank lines.

use std::cell::RefCell;

use html5ever::local_name;
use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, Tag, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};

/// Input beyond this many bytes is ignored. Email bodies from Salesforce are far smaller; the
/// cap keeps every buffer well inside the 32-bit lengths of html5ever's string type.
const MAX_INPUT_BYTES: usize = 64 << 20;

/// The plain text of an HTML document or fragment. Never panics; time and memory are linear in
/// the input.
pub fn to_text(html: &str) -> String {
    let html = truncate_at_char_boundary(html, MAX_INPUT_BYTES);
    let sink = Sink(RefCell::new(Text::with_capacity(html.len() / 2)));
    let tokenizer = Tokenizer::new(sink, TokenizerOpts::default());
    let input = BufferQueue::default();
    input.push_back(StrTendril::from_slice(html));
    // The sink never asks the tokenizer to pause (only a script-running parser does), so one
    // feed consumes everything but what waits for lookahead, which `end` finishes.
    let _ = tokenizer.feed(&input);
    tokenizer.end();
    tokenizer.sink.0.into_inner().finish()
}

/// Bytes that may start whitespace or an invisible character: ASCII whitespace, NUL, and the
/// first bytes of U+00A0 and U+00AD (0xC2), U+200B (0xE2) and U+FEFF (0xEF) in UTF-8.
static SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    let bytes = [b' ', b'\t', b'\n', b'\r', 0x0C, 0, 0xC2, 0xE2, 0xEF];
    while i < bytes.len() {
        t[bytes[i] as usize] = true;
        i += 1;
    }
    t
};

fn truncate_at_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// html5ever's tokenizer calls its sink through `&self`.
struct Sink(RefCell<Text>);

impl TokenSink for Sink {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        // The tokenizer never calls back into the sink while a token is being processed.
        let Ok(mut text) = self.0.try_borrow_mut() else {
            return TokenSinkResult::Continue;
        };
        match token {
            Token::TagToken(tag) => {
                text.skip_lf = false;
                text.tag(&tag)
            }
            Token::CharacterTokens(chars) => {
                let skip_lf = std::mem::take(&mut text.skip_lf);
                let s: &str = &chars;
                text.chars(if skip_lf {
                    s.strip_prefix('\n').unwrap_or(s)
                } else {
                    s
                });
                TokenSinkResult::Continue
            }
            // U+0000 in text is dropped, as the tree builder does.
            Token::NullCharacterToken | Token::ParseError(_) => TokenSinkResult::Continue,
            Token::CommentToken(_) | Token::DoctypeToken(_) | Token::EOFToken => {
                text.skip_lf = false;
                TokenSinkResult::Continue
            }
        }
    }
}

/// What becomes of the text of the raw-text element just opened.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Raw {
    /// Not in a raw-text element.
    #[default]
    None,
    /// Not shown (`<script>`, `<style>`, `<title>`...).
    Drop,
    /// Shown as preformatted text (`<xmp>`, `<textarea>`, `<plaintext>`).
    Keep,
}

/// The text so far and what is owed before the next visible character.
#[derive(Debug, Default)]
struct Text {
    out: String,
    /// Line breaks owed: 0 none, 1 the next text starts a line, 2 it follows a blank line.
    breaks: u8,
    /// Collapsed whitespace owed between two pieces of text on a line.
    space: bool,
    /// A table cell separator owed (it replaces the space).
    cell: bool,
    /// A cell has started and has no text yet: its leading block breaks are dropped, so that
    /// cells wrapping their text in `<p>` or `<div>` (as Outlook's do) stay on one line.
    cell_lead: bool,
    /// A table, row group or row started or ended since the last text.
    table_edge: bool,
    /// In a table cell (that is, after its start tag and before its end, the next cell, row
    /// or table).
    in_cell: bool,
    /// Open `<table>` elements: cells and rows outside a table are ignored, as the HTML parser
    /// does.
    tables: u32,
    /// Open `<pre>` and `<listing>` elements.
    pre: u32,
    /// Open `<template>` elements: their content is never shown.
    template: u32,
    raw: Raw,
    /// Drop an LF that comes right after `<pre>`, `<listing>` or `<textarea>`.
    skip_lf: bool,
}

impl Text {
    fn with_capacity(n: usize) -> Self {
        Text {
            out: String::with_capacity(n),
            ..Text::default()
        }
    }

    fn tag(&mut self, tag: &Tag) -> TokenSinkResult<()> {
        let start = tag.kind == TagKind::StartTag;
        if self.raw != Raw::None {
            // In a raw-text state the tokenizer emits one tag only: the element's end tag.
            let was = std::mem::take(&mut self.raw);
            if was == Raw::Drop {
                return TokenSinkResult::Continue;
            }
        } else if start {
            let raw = match tag.name {
                local_name!("script") => Some((RawKind::ScriptData, Raw::Drop)),
                local_name!("style")
                | local_name!("noscript")
                | local_name!("iframe")
                | local_name!("noembed")
                | local_name!("noframes") => Some((RawKind::Rawtext, Raw::Drop)),
                local_name!("title") => Some((RawKind::Rcdata, Raw::Drop)),
                local_name!("xmp") => Some((RawKind::Rawtext, Raw::Keep)),
                local_name!("textarea") => Some((RawKind::Rcdata, Raw::Keep)),
                local_name!("plaintext") => {
                    // Everything after it is text, to the end of the document.
                    self.raw = self.shown(Raw::Keep);
                    self.block(2);
                    return TokenSinkResult::Plaintext;
                }
                _ => None,
            };
            if let Some((kind, what)) = raw {
                self.raw = self.shown(what);
                match tag.name {
                    local_name!("xmp") => self.block(2),
                    local_name!("textarea") => self.skip_lf = true,
                    _ => {}
                }
                return TokenSinkResult::RawData(kind);
            }
        }
        if tag.name == local_name!("template") {
            if start {
                self.template = self.template.saturating_add(1);
            } else {
                self.template = self.template.saturating_sub(1);
            }
            return TokenSinkResult::Continue;
        }
        if self.template > 0 {
            return TokenSinkResult::Continue;
        }
        match tag.name {
            // `</br>` is read as `<br>` by browsers.
            local_name!("br") => self.line_break(),
            local_name!("pre") | local_name!("listing") => {
                self.block(2);
                if start {
                    self.pre = self.pre.saturating_add(1);
                    self.skip_lf = true;
                } else {
                    self.pre = self.pre.saturating_sub(1);
                }
            }
            local_name!("p")
            | local_name!("h1")
            | local_name!("h2")
            | local_name!("h3")
            | local_name!("h4")
            | local_name!("h5")
            | local_name!("h6")
            | local_name!("blockquote")
            | local_name!("hr")
            | local_name!("xmp") => self.block(2),
            local_name!("div")
            | local_name!("li")
            | local_name!("ul")
            | local_name!("ol")
            | local_name!("dl")
            | local_name!("dt")
            | local_name!("dd")
            | local_name!("section")
            | local_name!("article")
            | local_name!("header")
            | local_name!("footer")
            | local_name!("address")
            | local_name!("aside")
            | local_name!("nav")
            | local_name!("main")
            | local_name!("figure")
            | local_name!("figcaption")
            | local_name!("fieldset")
            | local_name!("legend")
            | local_name!("details")
            | local_name!("summary")
            | local_name!("dialog")
            | local_name!("form")
            | local_name!("center")
            | local_name!("menu")
            | local_name!("dir")
            | local_name!("hgroup")
            | local_name!("search")
            | local_name!("option")
            | local_name!("optgroup")
            | local_name!("body")
            | local_name!("html") => self.block(1),
            local_name!("table") => {
                if start {
                    self.tables = self.tables.saturating_add(1);
                } else {
                    self.tables = self.tables.saturating_sub(1);
                }
                self.table_edge();
            }
            local_name!("caption")
            | local_name!("thead")
            | local_name!("tbody")
            | local_name!("tfoot")
            | local_name!("tr")
                if self.tables > 0 =>
            {
                self.table_edge()
            }
            local_name!("td") | local_name!("th") if self.tables > 0 => self.table_cell(start),
            local_name!("img") if start => self.image(tag),
            _ => {}
        }
        TokenSinkResult::Continue
    }

    /// Nothing inside a `<template>` is shown.
    fn shown(&self, raw: Raw) -> Raw {
        if self.template > 0 { Raw::Drop } else { raw }
    }

    fn chars(&mut self, s: &str) {
        match self.raw {
            Raw::Drop => {}
            Raw::Keep => self.preformatted(s),
            Raw::None if self.template > 0 => {}
            Raw::None if self.pre > 0 => self.preformatted(s),
            Raw::None => self.flow(s),
        }
    }

    /// Text whose whitespace collapses. Runs of ordinary characters (with the single spaces
    /// between words) are copied as slices; only whitespace runs and invisible characters are
    /// looked at one by one.
    fn flow(&mut self, s: &str) {
        let b = s.as_bytes();
        let mut run: Option<usize> = None;
        let mut i = 0;
        loop {
            let start = i;
            while b.get(i).is_some_and(|&c| !SPECIAL[usize::from(c)]) {
                i += 1;
            }
            if i > start && run.is_none() {
                self.before_text();
                run = Some(start);
            }
            let Some(&byte) = b.get(i) else { break };
            // (is whitespace, length) of a special character; `None` for an ordinary one
            // that merely starts like U+00A0, U+00AD, U+200B or U+FEFF.
            let special = match byte {
                b' ' | b'\t' | b'\n' | b'\r' | b'\x0C' => Some((true, 1)),
                b'\0' => Some((false, 1)),
                0xC2 => match b.get(i + 1) {
                    Some(0xA0) => Some((true, 2)),
                    Some(0xAD) => Some((false, 2)),
                    _ => None,
                },
                0xE2 if b.get(i + 1..i + 3) == Some(&[0x80, 0x8B]) => Some((false, 3)),
                0xEF if b.get(i + 1..i + 3) == Some(&[0xBB, 0xBF]) => Some((false, 3)),
                _ => None,
            };
            match special {
                None => {
                    if run.is_none() {
                        self.before_text();
                        run = Some(i);
                    }
                    i += 1;
                }
                // One space between two words stays in the run.
                Some((true, 1))
                    if byte == b' '
                        && run.is_some()
                        && b.get(i + 1)
                            .is_some_and(|&n| n.is_ascii() && !SPECIAL[usize::from(n)]) =>
                {
                    i += 1;
                }
                Some((is_space, len)) => {
                    if let Some(from) = run.take() {
                        self.push(s, from, i);
                    }
                    if is_space {
                        self.whitespace();
                    }
                    i += len;
                }
            }
        }
        if let Some(from) = run {
            self.push(s, from, s.len());
        }
    }

    /// Appends `s[from..to]` (always whole characters: the bounds are where a character
    /// starts or ends).
    fn push(&mut self, s: &str, from: usize, to: usize) {
        if let Some(piece) = s.get(from..to) {
            self.out.push_str(piece);
        }
    }

    /// Text whose whitespace is kept (U+00A0 becomes a space).
    fn preformatted(&mut self, s: &str) {
        let mut run: Option<usize> = None;
        for (i, c) in s.char_indices() {
            match c {
                '\n' | '\u{a0}' | '\0' | '\u{ad}' | '\u{200b}' | '\u{feff}' => {
                    if let Some(from) = run.take() {
                        self.push(s, from, i);
                    }
                    match c {
                        '\n' => {
                            self.before_text();
                            self.newline();
                        }
                        '\u{a0}' => {
                            self.before_text();
                            self.out.push(' ');
                        }
                        _ => {}
                    }
                }
                _ => {
                    if run.is_none() {
                        self.before_text();
                        run = Some(i);
                    }
                }
            }
        }
        if let Some(from) = run {
            self.push(s, from, s.len());
        }
    }

    fn image(&mut self, tag: &Tag) {
        let mut alt = None;
        let mut src = false;
        for attr in &tag.attrs {
            match attr.name.local {
                local_name!("alt") => alt = Some(&attr.value),
                local_name!("src") => src = !attr.value.is_empty(),
                _ => {}
            }
        }
        if let (Some(alt), true) = (alt, src) {
            // An image is a box of its own: its alt text does not run into the words around it.
            self.whitespace();
            self.flow(alt);
            self.whitespace();
        }
    }

    fn line_has_text(&self) -> bool {
        !self.out.is_empty() && !self.out.ends_with('\n')
    }

    fn whitespace(&mut self) {
        if self.breaks == 0 && self.line_has_text() {
            self.space = true;
        }
    }

    /// The start or end of a cell: the next text, if on this row, follows a separator, and the
    /// block breaks at the end of the cell's text are dropped.
    fn table_cell(&mut self, start: bool) {
        if !self.table_edge && self.line_has_text() {
            self.breaks = 0;
            self.cell = true;
        }
        self.cell_lead = start;
        self.in_cell = start;
    }

    /// Tables, row groups and rows are lines (the block breaks at the end of a cell's text do
    /// not add to them).
    fn table_edge(&mut self) {
        if self.in_cell && !self.table_edge && self.line_has_text() {
            self.breaks = 0;
        }
        self.breaks = self.breaks.max(1);
        self.table_edge = true;
        self.cell_lead = false;
        self.in_cell = false;
    }

    /// The start or end of a block: `n` is 1 to start a new line, 2 to leave a blank line.
    fn block(&mut self, n: u8) {
        if !self.cell_lead {
            self.breaks = self.breaks.max(n);
        }
    }

    /// Pays what is owed before visible text: line breaks, else a cell separator or a space.
    fn before_text(&mut self) {
        if self.breaks > 0 {
            self.trim_line_end();
            if !self.out.is_empty() {
                if !self.out.ends_with('\n') {
                    self.out.push('\n');
                }
                if self.breaks > 1 && !self.out.ends_with("\n\n") {
                    self.out.push('\n');
                }
            }
        } else if self.cell {
            self.out.push('\t');
        } else if self.space {
            self.out.push(' ');
        }
        self.breaks = 0;
        self.space = false;
        self.cell = false;
        self.cell_lead = false;
        self.table_edge = false;
    }

    fn line_break(&mut self) {
        self.space = false;
        self.cell = false;
        self.before_text();
        self.newline();
    }

    /// Ends the line: its trailing whitespace goes, and at most one blank line in a row.
    fn newline(&mut self) {
        self.trim_line_end();
        if !self.out.is_empty() && !self.out.ends_with("\n\n") {
            self.out.push('\n');
        }
    }

    fn trim_line_end(&mut self) {
        let len = self
            .out
            .trim_end_matches(|c: char| c != '\n' && c.is_whitespace())
            .len();
        self.out.truncate(len);
    }

    fn finish(mut self) -> String {
        let len = self.out.trim_end().len();
        self.out.truncate(len);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::to_text;
    use proptest::prelude::*;

    #[test]
    fn paragraphs_stand_apart_and_br_breaks_the_line() {
        // Given paragraphs, one with a <br>
        let html = "<p>Hello team,</p><p>Line one<br>Line two</p>Loose text";
        // When converted, then each paragraph is a block apart and <br> a line break
        assert_eq!(
            to_text(html),
            "Hello team,\n\nLine one\nLine two\n\nLoose text"
        );
        // and `</br>` is read as <br>, as browsers do
        assert_eq!(to_text("a</br>b"), "a\nb");
        // and consecutive <br>s leave at most one blank line
        assert_eq!(to_text("a<br><br><br><br>b<br>"), "a\n\nb");
    }

    #[test]
    fn divs_start_lines_without_blank_lines() {
        assert_eq!(
            to_text("<div>one</div><div>two<div>three</div>four</div>"),
            "one\ntwo\nthree\nfour"
        );
        assert_eq!(
            to_text("<section><header>Head</header><article>Body</article></section>"),
            "Head\nBody"
        );
    }

    #[test]
    fn list_items_are_lines_of_their_own() {
        // Given lists, with and without end tags
        let html = "<p>Steps:</p><ul><li>one</li><li>two</li></ul>\
                    <ol>\n  <li>three\n  <li>four\n</ol><dl><dt>term</dt><dd>definition</dd></dl>";
        // When converted, then no two items run into one word
        assert_eq!(
            to_text(html),
            "Steps:\n\none\ntwo\nthree\nfour\nterm\ndefinition"
        );
    }

    #[test]
    fn table_cells_are_separated_and_rows_are_lines() {
        // Given a data table laid out with whitespace between the tags
        let html = "<table>\n <tr>\n  <th>Name</th>\n  <th> Qty </th>\n </tr>\n \
                    <tr><td>Widget</td><td>3</td><td></td><td>left</td></tr>\n</table>after";
        // When converted, then cells are tab-separated and each row is a line
        assert_eq!(to_text(html), "Name\tQty\nWidget\t3\tleft\nafter");
        // and cells whose text is wrapped in blocks (as Outlook writes them) stay on one row,
        // while blocks inside a cell's text still break it
        assert_eq!(
            to_text(
                "<table><tr><td><p>Browser</p></td><td><div><p>Chrome</p></div></td></tr>\
                     <tr><td><p>a</p><p>b</p><td><p>c</p></tr><tr><td>d</table>after"
            ),
            "Browser\tChrome\na\n\nb\tc\nd\nafter"
        );
        // and cells outside any table are ignored, as the HTML parser does
        assert_eq!(to_text("<p>intro</p><td>x<td>y"), "intro\n\nxy");
        // and a nested table starts its own lines
        assert_eq!(
            to_text(
                "<table><tr><td>a<table><tr><td>b</td><td>c</td></tr></table></td><td>d</td></tr></table>"
            ),
            "a\nb\tc\nd"
        );
    }

    #[test]
    fn a_quoted_reply_stands_apart() {
        let html = "<p>Thanks!</p><blockquote>On Monday, Jane wrote:<br>\
                    <blockquote>It broke.</blockquote></blockquote>Bye";
        assert_eq!(
            to_text(html),
            "Thanks!\n\nOn Monday, Jane wrote:\n\nIt broke.\n\nBye"
        );
    }

    #[test]
    fn preformatted_text_keeps_its_whitespace() {
        // Given a <pre> starting with a newline (which the parser drops), indented lines,
        // trailing spaces and a run of empty lines
        let html =
            "<p>Log:</p><pre>\n  at foo()  \n    at   bar()\n\n\n\nend</pre>after  the   log";
        // Then indentation and inner spaces are kept, trailing spaces and extra blank lines not
        assert_eq!(
            to_text(html),
            "Log:\n\n  at foo()\n    at   bar()\n\nend\n\nafter the log"
        );
        // and outside <pre> whitespace collapses as in a browser
        assert_eq!(
            to_text("<p>  Hello \n\t   <b>big</b>   world  </p> <span>a</span><span>b</span>"),
            "Hello big world\n\nab"
        );
        // and <textarea> and <xmp> keep their text as written
        assert_eq!(
            to_text("Note: <textarea>\nx  <b>y</b></textarea><xmp>a  <i>b</xmp>"),
            "Note: x  <b>y</b>\n\na  <i>b"
        );
    }

    #[test]
    fn character_references_are_decoded() {
        // Given named, numeric, windows-1252, invalid and unterminated references
        let html = "Hello&nbsp;team &amp; co &lt;3 &#233;t&#xE9; &euro;&#128; \
                    [&#0;] [&#x110000;] [&#xD800;] &bogus; &amp";
        // Then each becomes what a browser shows: invalid code points are U+FFFD and an
        // unknown name stays as written
        assert_eq!(
            to_text(html),
            "Hello team & co <3 été €€ [\u{FFFD}] [\u{FFFD}] [\u{FFFD}] &bogus; &"
        );
        // and references in an image's alt text are decoded too
        assert_eq!(to_text("<img src=a.png alt=\"R&amp;D\">"), "R&D");
    }

    #[test]
    fn head_scripts_styles_and_hidden_containers_are_dropped() {
        let html = "<html><head><title>T</title><style>p{color:red}</style>\
                    <script>var a = \"<p>x</p>\"; if (a < b) {}</script><meta charset=utf-8></head>\
                    <body>Body<style>.x{}</style><noscript>enable js</noscript>\
                    <template><p>tpl<template>inner</template>still tpl</p></template>\
                    <iframe>frame</iframe> text<script>alert(1)</script></body></html>";
        assert_eq!(to_text(html), "Body text");
    }

    #[test]
    fn comments_and_doctype_are_dropped() {
        // Given plain comments, Outlook's conditional comments and bogus comments
        let html = "<!DOCTYPE html>a<!-- hidden -->b<!--[if mso]><p>mso only</p><![endif]-->c\
                    <![if !supportLists]>1.<![endif]> d<!-->e<!--->f<!-- never closed";
        assert_eq!(to_text(html), "abc1. def");
    }

    #[test]
    fn unclosed_and_broken_tags_still_give_the_text() {
        assert_eq!(
            to_text("<p>one<p>two<div>three<b>bold<i>both"),
            "one\n\ntwo\nthreeboldboth"
        );
        assert_eq!(to_text("text<a href=\"x"), "text");
        assert_eq!(to_text("a<script>b"), "a");
        assert_eq!(to_text("a < b and c > d</p></div></td>"), "a < b and c > d");
        assert_eq!(to_text("<pre>kept   \n  ws"), "kept\n  ws");
    }

    #[test]
    fn links_are_their_text_and_images_their_alt_text() {
        assert_eq!(
            to_text("See <a href=\"https://kb.example/1\">this article</a>."),
            "See this article."
        );
        // An image with a source reads as its alt text, apart from the words around it; an
        // image without a source reads as nothing.
        assert_eq!(
            to_text("<img src=\"logo.png\" alt=\"Acme\">Hello<img alt=\"x\">!"),
            "Acme Hello!"
        );
    }

    #[test]
    fn ten_thousand_nested_elements_need_no_deep_stack() {
        // Given 10,000 nested elements, run on a thread with a small stack
        let html = format!(
            "{}deep{}{}",
            "<div><span>".repeat(10_000),
            "</span></div>".repeat(10_000),
            "<blockquote><p>level</p>".repeat(10_000)
        );
        let text = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || to_text(&html))
            .expect("spawning a thread")
            .join()
            .expect("no stack overflow");
        // Then the text is all there
        let expected = format!("deep\n\n{}", vec!["level"; 10_000].join("\n\n"));
        assert_eq!(text, expected);
    }

    #[test]
    fn nul_and_invisible_characters_are_removed() {
        assert_eq!(to_text("a\0b<p>c\0d</p>\0"), "ab\n\ncd");
        assert!(!to_text("<pre>\0x\0</pre><textarea>\0</textarea>").contains('\0'));
        // Soft hyphens, zero-width spaces and byte order marks are invisible when rendered
        assert_eq!(
            to_text("\u{feff}soft&shy;ware zero\u{200b}width \u{feff}bom"),
            "software zerowidth bom"
        );
    }

    #[test]
    fn non_ascii_text_and_emoji_are_kept() {
        let html = "<p>Grüße aus Zürich — 日本語の<b>テキスト</b></p><p>👩‍💻 done 🎉 &#x1F600;</p>";
        assert_eq!(
            to_text(html),
            "Grüße aus Zürich — 日本語のテキスト\n\n👩\u{200d}💻 done 🎉 😀"
        );
    }

    #[test]
    fn empty_input_gives_empty_text() {
        assert_eq!(to_text(""), "");
        assert_eq!(to_text(" \n\t "), "");
        assert_eq!(
            to_text("<html><head></head><body><p>&nbsp;</p><br></body></html>"),
            ""
        );
    }

    #[test]
    fn trailing_spaces_and_blank_line_runs_are_trimmed() {
        let html = "<br><p>&nbsp;</p><p>a&nbsp;&nbsp;</p><p>&nbsp;</p><p></p><br><br>\
                    <div>&nbsp;</div><p>b <br> c</p><br><p>&nbsp;</p>";
        assert_eq!(to_text(html), "a\n\nb\nc");
    }

    fn well_formed(text: &str) -> Result<(), TestCaseError> {
        prop_assert!(!text.contains('\0'), "NUL in {text:?}");
        prop_assert!(!text.contains("\n\n\n"), "two blank lines in {text:?}");
        prop_assert!(!text.starts_with('\n'), "leading blank line in {text:?}");
        prop_assert!(
            !text.ends_with(char::is_whitespace),
            "trailing space in {text:?}"
        );
        for line in text.lines() {
            prop_assert!(
                !line.ends_with(char::is_whitespace),
                "trailing space in {line:?}"
            );
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn any_input_gives_well_formed_text(html in any::<String>()) {
            well_formed(&to_text(&html))?;
        }

        #[test]
        fn any_tag_soup_gives_well_formed_text(parts in prop::collection::vec(prop::sample::select(vec![
            "<p>", "</p>", "<br>", "</br>", "<div>", "</div>", "<pre>", "</pre>", "<td>", "<tr>",
            "<table>", "</table>", "<li>", "<script>", "</script>", "<style>", "</style>",
            "<template>", "</template>", "<textarea>", "</textarea>", "<xmp>", "</xmp>",
            "<plaintext>", "<title>", "</title>", "<!--", "-->", "<![CDATA[", "]]>", "<img src=x alt='a b'>",
            "&nbsp;", "&amp;", "&#0;", "&#x", ";", "\0", " ", "\n", "\t", "\r", "  ", "word", "é", "👩‍💻",
            "<", ">", "\"", "'", "=", "&", "\u{a0}", "\u{3000}",
        ]), 0..64)) {
            well_formed(&to_text(&parts.concat()))?;
        }
    }
}
