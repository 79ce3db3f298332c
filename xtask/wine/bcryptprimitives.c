/*
 * A minimal stand-in for Windows' bcryptprimitives.dll.
 *
 * Rust's standard library (since 1.78) imports ProcessPrng from
 * bcryptprimitives.dll to seed HashMap keys and to fill random buffers.
 * Wine 8.0, which Debian bookworm ships, does not provide that DLL, so every
 * Rust test executable fails to load with STATUS_DLL_NOT_FOUND (exit code 53)
 * before main() runs. This shim forwards ProcessPrng to BCryptGenRandom,
 * which Wine implements, and is copied into the project's own Wine prefix
 * by `cargo xtask test --windows`. It is never shipped with the library.
 */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    /* BCryptGenRandom takes a ULONG length, so large requests are split. */
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!BCRYPT_SUCCESS(BCryptGenRandom(NULL, data, chunk,
                                            BCRYPT_USE_SYSTEM_PREFERRED_RNG))) {
            return FALSE;
        }
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    (void)instance;
    (void)reason;
    (void)reserved;
    return TRUE;
}
