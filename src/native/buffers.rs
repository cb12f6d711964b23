//! Conversions between Rust slices and the ABI's pointer/length pairs, each one checked.
//!
//! Envoy's buffers are read only through [`envoy_bytes`], which turns a null pointer, a zero
//! length or an impossible length (above `isize::MAX`) into an empty slice instead of undefined
//! behaviour. The lifetime of the result is chosen by the caller and must not outlive the hook.

use super::abi::{EnvoyBuffer, EnvoyHttpHeader, ModuleBuffer, ModuleHttpHeader};

/// Lends `bytes` to Envoy for one callback (Envoy copies what it keeps).
pub(crate) fn module_buffer(bytes: &[u8]) -> ModuleBuffer {
    ModuleBuffer {
        ptr: bytes.as_ptr(),
        length: bytes.len(),
    }
}

/// The "no value" buffer (a null pointer), e.g. to remove a header with `set_header`.
pub(crate) fn null_module_buffer() -> ModuleBuffer {
    ModuleBuffer {
        ptr: std::ptr::null(),
        length: 0,
    }
}

/// Lends one header to Envoy for one callback.
pub(crate) fn module_header(name: &[u8], value: &[u8]) -> ModuleHttpHeader {
    ModuleHttpHeader {
        key_ptr: name.as_ptr(),
        key_length: name.len(),
        value_ptr: value.as_ptr(),
        value_length: value.len(),
    }
}

/// An empty Envoy buffer, for out-parameters.
pub(crate) fn empty_envoy_buffer() -> EnvoyBuffer {
    EnvoyBuffer {
        ptr: std::ptr::null(),
        length: 0,
    }
}

/// An empty Envoy header, for out-parameter arrays.
pub(crate) fn empty_envoy_header() -> EnvoyHttpHeader {
    EnvoyHttpHeader {
        key_ptr: std::ptr::null(),
        key_length: 0,
        value_ptr: std::ptr::null(),
        value_length: 0,
    }
}

/// Reads `length` bytes at `ptr`, or nothing when the pair cannot describe real memory.
///
/// # Safety
/// When `ptr` is non-null and `length` is at most `isize::MAX`, they must describe bytes Envoy
/// keeps alive and unchanged for `'a` (at most until the current event hook returns).
pub(crate) unsafe fn raw_bytes<'a>(ptr: *const u8, length: usize) -> &'a [u8] {
    if ptr.is_null() || length == 0 || length > isize::MAX as usize {
        return &[];
    }
    // SAFETY: non-null, non-zero and within isize::MAX; the caller vouches for the memory.
    unsafe { std::slice::from_raw_parts(ptr, length) }
}

/// The bytes of an Envoy buffer (see [`raw_bytes`]).
///
/// # Safety
/// As for [`raw_bytes`].
pub(crate) unsafe fn envoy_bytes<'a>(buffer: EnvoyBuffer) -> &'a [u8] {
    // SAFETY: forwarded contract.
    unsafe { raw_bytes(buffer.ptr, buffer.length) }
}

/// Name and value of an Envoy header (see [`raw_bytes`]).
///
/// # Safety
/// As for [`raw_bytes`], for both pairs.
pub(crate) unsafe fn envoy_header<'a>(header: EnvoyHttpHeader) -> (&'a [u8], &'a [u8]) {
    // SAFETY: forwarded contract.
    unsafe {
        (
            raw_bytes(header.key_ptr, header.key_length),
            raw_bytes(header.value_ptr, header.value_length),
        )
    }
}

/// An array Envoy lends to a hook (callout headers, body slices), as a slice.
///
/// # Safety
/// When `ptr` is non-null, it must point to `count` initialised `T` valid for `'a`.
pub(crate) unsafe fn envoy_array<'a, T>(ptr: *const T, count: usize) -> &'a [T] {
    let too_long = count
        .checked_mul(std::mem::size_of::<T>())
        .is_none_or(|bytes| bytes > isize::MAX as usize);
    if ptr.is_null() || count == 0 || too_long {
        return &[];
    }
    // SAFETY: non-null, size within isize::MAX; the caller vouches for the memory.
    unsafe { std::slice::from_raw_parts(ptr, count) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_pairs_read_as_empty() {
        // SAFETY: null and oversized pairs are never dereferenced.
        unsafe {
            assert!(raw_bytes(std::ptr::null(), 5).is_empty());
            assert!(raw_bytes([1u8].as_ptr(), usize::MAX).is_empty());
            assert!(envoy_array::<EnvoyHttpHeader>(std::ptr::null(), 3).is_empty());
        }
        let bytes = b"abc";
        // SAFETY: the pair describes `bytes`.
        assert_eq!(unsafe { raw_bytes(bytes.as_ptr(), 3) }, b"abc");
    }
}
