//! NDR 2.0 encoder and decoder helpers ([C706] chapter 14).
