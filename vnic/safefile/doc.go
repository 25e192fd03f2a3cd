// Package safefile creates the files vnic writes — captures, lab reports,
// anything a root daemon puts at a path a user chose — so that another
// user cannot turn them against the system, even in a world-writable
// directory such as /tmp:
//
//   - the file itself is never a symbolic link: a link planted at the path
//     is refused, not followed (O_NOFOLLOW), so root never truncates or
//     overwrites the file it points to;
//   - a directory on the way is reached through a symbolic link only if
//     root or the caller owns the link (another user's link in /tmp is
//     refused), so the file never lands where another user pointed it;
//   - an existing file is reused only if it is a regular file the caller
//     owns with one link (a re-run replaces its own output), never a file
//     another user created or a hard link to one;
//   - a new file is created with O_EXCL, mode Perm (0600) unless the
//     caller asks otherwise: captures hold packet payloads.
//
// Every step works on file descriptors (openat relative to the directory
// opened the step before), so nothing can be swapped between a check and
// the use. The kernel's fs.protected_symlinks and fs.protected_regular
// guard sticky directories the same way when they are on; this package
// does not rely on them.
//
// Linux only; elsewhere Create and MkdirAll return an error wrapping
// errors.ErrUnsupported.
package safefile
