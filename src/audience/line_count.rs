//! Physical line numbers for CSV records.
//!
//! The csv crate counts `\n` bytes when a record starts, which is wrong for the
//! files spreadsheets write on Windows and old Macs: after `\r\n` the record's
//! `\n` is not consumed yet when its position is taken (every row one line
//! early), and a file of bare `\r` ends has no `\n` at all (every row line 1).
//! This reader counts line ends itself as the bytes pass, with `\r\n`, `\r` and
//! `\n` each ending one line, and answers "on which line does the record that
//! the CSV reader says starts at byte N begin". That offset can lie before the
//! record: on the `\n` of the previous record's `\r\n`, or before empty lines
//! the reader skipped; only line-end bytes lie between it and the record.

use std::collections::VecDeque;
use std::io::Read;

#[derive(Debug, Clone, Copy)]
struct LineEnd {
    first: u64,
    next_line: u64,
}

pub(super) struct LineCounter<R> {
    inner: R,
    /// Bytes passed through so far.
    offset: u64,
    /// Line ends not yet behind the last record asked about, as the offset of
    /// their first byte and of the byte after them (`\r\n` is two bytes). Bounded
    /// by the CSV reader's read-ahead plus one record.
    ends: VecDeque<LineEnd>,
    /// The line of the byte after the last end popped from `ends`.
    line: u64,
    /// Whether the last byte passed was `\r`, whose `\n` may come in the next read.
    after_cr: bool,
}

impl<R: Read> LineCounter<R> {
    pub(super) fn new(inner: R) -> LineCounter<R> {
        LineCounter {
            inner,
            offset: 0,
            ends: VecDeque::new(),
            line: 1,
            after_cr: false,
        }
    }

    /// The 1-based line of the record the CSV reader says starts at `offset`.
    /// Offsets asked about must not go backwards.
    pub(super) fn record_line(&mut self, offset: u64) -> u64 {
        let mut start = offset;
        while let Some(end) = self.ends.front().copied() {
            if end.next_line <= start {
                // A line end wholly before the record.
                self.ends.pop_front();
                self.line += 1;
            } else if end.first <= start {
                // The record's reported start is a line end (an empty line, or
                // the `\n` of a `\r\n`): the record begins after it.
                self.ends.pop_front();
                self.line += 1;
                start = end.next_line;
            } else {
                break;
            }
        }
        self.line
    }
}

impl<R: Read> Read for LineCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for (i, byte) in buf[..n].iter().enumerate() {
            let at = self.offset + i as u64;
            let single = LineEnd {
                first: at,
                next_line: at + 1,
            };
            match byte {
                b'\r' => self.ends.push_back(single),
                // The `\n` of `\r\n` belongs to the end its `\r` began.
                b'\n' if self.after_cr => {
                    if let Some(end) = self.ends.back_mut().filter(|e| e.next_line == at) {
                        end.next_line = at + 1;
                    }
                }
                b'\n' => self.ends.push_back(single),
                _ => {}
            }
            self.after_cr = *byte == b'\r';
        }
        self.offset += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line of each record start, as the CSV reader reports them.
    fn record_lines(bytes: &[u8]) -> Vec<u64> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(LineCounter::new(bytes));
        let mut record = csv::ByteRecord::new();
        let mut lines = Vec::new();
        while reader.read_byte_record(&mut record).expect("csv") {
            let start = record.position().map(|p| p.byte()).unwrap_or(0);
            lines.push(reader.get_mut().record_line(start));
        }
        lines
    }

    #[test]
    fn every_line_end_counts_once() {
        assert_eq!(record_lines(b"id\n1\n2\n"), [2, 3]);
        assert_eq!(record_lines(b"id\r\n1\r\n2\r\n"), [2, 3]);
        assert_eq!(record_lines(b"id\r1\r2\r"), [2, 3]);
        assert_eq!(record_lines(b"id\n1\r\n\r\n2\r3"), [2, 4, 5]);
        assert_eq!(record_lines(b"id\n\n\n1\n\r\r2"), [4, 7]);
    }

    #[test]
    fn a_quoted_line_break_is_a_physical_line() {
        assert_eq!(record_lines(b"id,t\r\n1,\"a\r\nb\"\r\n2,c\r\n"), [2, 4]);
        assert_eq!(record_lines(b"id,t\n1,\"a\rb\"\n2,c"), [2, 4]);
    }

    #[test]
    fn a_crlf_split_across_reads_counts_once() {
        // One byte per read: `\r` and its `\n` never arrive together.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let Some((first, rest)) = self.0.split_first() else {
                    return Ok(0);
                };
                buf[0] = *first;
                self.0 = rest;
                Ok(1)
            }
        }
        let mut counter = LineCounter::new(Trickle(b"a\r\n\r\nb\r\nc"));
        std::io::copy(&mut counter, &mut std::io::sink()).expect("copy");
        // Reported on the first `\n`, before the empty line: `b` is on line 3.
        assert_eq!(counter.record_line(2), 3);
        assert_eq!(counter.record_line(8), 4);
    }
}
