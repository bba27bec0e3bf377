// The seed every random draw starts from unless told otherwise: parameter initialisation,
// shuffling and augmentation, and stochastic rounding's draws (the reference's --seed 42).
// Everything that defaults a seed imports it from here.
export const DEFAULT_SEED = 42;
