//! pwreset-operator: mirrors Microsoft Entra ID password-reset operations
//! (Graph `longRunningOperation`) into `PasswordResetOperation` custom resources.

pub mod emulator;
