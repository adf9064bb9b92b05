/*
 * Test tooling only, never packaged: Wine 8's icacls is a stub that changes nothing and
 * Wine keeps no ACLs at all, so the ACL the agent asks for cannot be read back under
 * Wine. tests/wine/windows-under-wine.sh builds this recorder with mingw-w64 over the
 * prefix's icacls.exe: it appends its command line to C:\icacls.log and exits 0, so the
 * test checks which ACL the agent asks for, and on which paths.
 */
#include <windows.h>
#include <stdio.h>

int main(void)
{
    FILE *log = fopen("C:\\icacls.log", "a");
    if (log) {
        fprintf(log, "%s\n", GetCommandLineA());
        fclose(log);
    }
    return 0;
}
