/** This package's version: the Keyhaven server's (the Rust workspace's) version. */
export const VERSION = "0.1.0";
