//! NDJSON line splitting: a body's chunks, as they arrive, into numbered lines.
//!
//! In: chunks of any size, split anywhere (a line, even a `\r\n`, may span many). Out: each
//! line, numbered from 1, without its `\n`, or [`Piece::TooLong`] for one longer than the limit
//! (its bytes dropped as they come); a last line without `\n` when the body ends. Guarantees:
//! the same pieces whatever the chunking (the fuzz target `ndjson` checks it against
//! splitting the whole body at once); memory bounded by the limit, whatever the body's size.

/// What the splitter hands on.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// A whole line (without its `\n`), and its number.
    Line(usize, &'a [u8]),
    /// A line over the limit, by number; none of its bytes are kept.
    TooLong(usize),
}

impl Piece<'_> {
    /// The line's number, and its bytes (`None`: too long), owned.
    pub fn owned(&self) -> (usize, Option<Vec<u8>>) {
        match self {
            Piece::Line(n, l) => (*n, Some(l.to_vec())),
            Piece::TooLong(n) => (*n, None),
        }
    }
}

/// Splits a body into lines as its chunks arrive.
#[derive(Debug)]
pub struct Splitter {
    limit: usize,
    /// The start of the line being read, when it spans chunks.
    buf: Vec<u8>,
    /// Lines ended so far.
    line_no: usize,
    /// Inside a line over the limit (already reported): bytes are dropped until its end.
    skipping: bool,
}

impl Splitter {
    /// Lines of at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            buf: Vec::new(),
            line_no: 0,
            skipping: false,
        }
    }

    /// Takes the next chunk, handing every line it ends to `out` (which may stop the split
    /// with an error).
    pub fn push<E>(
        &mut self,
        chunk: &[u8],
        out: &mut impl FnMut(Piece<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut rest = chunk;
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            self.line_no += 1;
            if self.skipping {
                self.skipping = false;
            } else if self.buf.len() + i > self.limit {
                out(Piece::TooLong(self.line_no))?;
            } else if self.buf.is_empty() {
                out(Piece::Line(self.line_no, &rest[..i]))?;
            } else {
                self.buf.extend_from_slice(&rest[..i]);
                let line = std::mem::take(&mut self.buf);
                out(Piece::Line(self.line_no, &line))?;
                self.buf = line;
            }
            self.buf.clear();
            rest = &rest[i + 1..];
        }
        if !self.skipping {
            if self.buf.len() + rest.len() > self.limit {
                out(Piece::TooLong(self.line_no + 1))?;
                self.buf.clear();
                self.skipping = true;
            } else {
                self.buf.extend_from_slice(rest);
            }
        }
        Ok(())
    }

    /// The body ended: hands on its last line when it had no `\n`.
    pub fn finish<E>(&mut self, out: &mut impl FnMut(Piece<'_>) -> Result<(), E>) -> Result<(), E> {
        if !self.buf.is_empty() && !self.skipping {
            let line = std::mem::take(&mut self.buf);
            out(Piece::Line(self.line_no + 1, &line))?;
        }
        Ok(())
    }

    /// The body broke off: drops the unfinished line and gives its number.
    pub fn broke_off(&mut self) -> usize {
        self.buf.clear();
        self.skipping = true;
        self.line_no + 1
    }
}

/// The pieces of a whole body, split at once: what [`Splitter`] gives for any chunking.
pub fn split_whole(body: &[u8], limit: usize) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop(); // the body ended with `\n`, or was empty
    }
    for (i, line) in lines.into_iter().enumerate() {
        if line.len() > limit {
            pieces.push(Piece::TooLong(i + 1));
        } else {
            pieces.push(Piece::Line(i + 1, line));
        }
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], limit: usize) -> Vec<(usize, Option<Vec<u8>>)> {
        let mut got = Vec::new();
        let mut out = |p: Piece<'_>| {
            got.push(p.owned());
            Ok::<(), ()>(())
        };
        let mut s = Splitter::new(limit);
        for c in chunks {
            s.push(c, &mut out).unwrap();
        }
        s.finish(&mut out).unwrap();
        got
    }

    fn whole(body: &[u8], limit: usize) -> Vec<(usize, Option<Vec<u8>>)> {
        split_whole(body, limit).iter().map(Piece::owned).collect()
    }

    #[test]
    fn lines_are_the_same_however_the_body_is_cut() {
        let body = b"{\"a\":1}\n\n0123456789ab\n{\"b\":2}\r\nlast";
        let expected = whole(body, 10);
        assert_eq!(
            expected,
            vec![
                (1, Some(b"{\"a\":1}".to_vec())),
                (2, Some(Vec::new())),
                (3, None),
                (4, Some(b"{\"b\":2}\r".to_vec())),
                (5, Some(b"last".to_vec())),
            ]
        );
        for cut in 0..body.len() {
            for cut2 in cut..body.len() {
                let (a, rest) = body.split_at(cut);
                let (b, c) = rest.split_at(cut2 - cut);
                assert_eq!(split(&[a, b, c], 10), expected, "cut at {cut}, {cut2}");
            }
        }
    }

    #[test]
    fn a_long_line_is_reported_once_and_the_next_one_is_read() {
        assert_eq!(
            split(&[b"abcdefgh", b"ijkl", b"mn\nok\n"], 4),
            vec![(1, None), (2, Some(b"ok".to_vec()))]
        );
        // Over the limit in its last chunk, at the end of the body.
        assert_eq!(
            split(&[b"ok\nabc", b"defgh"], 4),
            vec![(1, Some(b"ok".to_vec())), (2, None)]
        );
    }
}
