//! The process's own memory, from `/proc/self/statm` (Linux).

/// Resident and virtual memory of this process, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessMemory {
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
}

impl ProcessMemory {
    /// Reads `/proc/self/statm`; `None` where there is no such file (not Linux).
    pub fn read() -> Option<ProcessMemory> {
        let text = std::fs::read_to_string("/proc/self/statm").ok()?;
        Self::parse(&text, page_bytes())
    }

    /// `size resident shared text lib data dt`, in pages.
    fn parse(text: &str, page_bytes: u64) -> Option<ProcessMemory> {
        let mut fields = text.split_ascii_whitespace().map(|f| f.parse::<u64>().ok());
        let virtual_pages = fields.next()??;
        let resident_pages = fields.next()??;
        Some(ProcessMemory {
            resident_bytes: resident_pages.saturating_mul(page_bytes),
            virtual_bytes: virtual_pages.saturating_mul(page_bytes),
        })
    }
}

fn page_bytes() -> u64 {
    // SAFETY: sysconf only reads a system constant; it has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statm_fields_are_pages() {
        let m = ProcessMemory::parse("100 25 3 1 0 40 0\n", 4096).unwrap();
        assert_eq!(m, ProcessMemory { resident_bytes: 25 * 4096, virtual_bytes: 100 * 4096 });
        assert_eq!(ProcessMemory::parse("garbage", 4096), None);
        let own = ProcessMemory::read().expect("Linux has /proc/self/statm");
        assert!(own.resident_bytes > 0 && own.virtual_bytes >= own.resident_bytes, "{own:?}");
    }
}
