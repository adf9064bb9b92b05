/*
 * Test tooling only, never packaged: a stand-in for Windows' bcryptprimitives.dll for
 * Wine 8, which lacks it. Rust's standard library draws its random numbers from that
 * DLL's ProcessPrng (Windows 10 and later have it); Wine added the DLL after version 8.
 * This one answers ProcessPrng from advapi32's RtlGenRandom (SystemFunction036), which
 * Wine 8 has. tests/wine/windows-under-wine.sh builds it with mingw-w64 into the fresh
 * Wine prefix's system32.
 */
#include <windows.h>
#include <ntsecapi.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        /* RtlGenRandom takes a ULONG length. */
        ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!RtlGenRandom(data, n))
            return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
