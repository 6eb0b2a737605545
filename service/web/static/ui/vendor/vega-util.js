// The three vega-util names vega-interpreter imports, taken from the vega build already loaded
// (vega.min.js sets window.vega), so the interpreter needs no second copy of vega-util.
export const { ascending, isString, DisallowedObjectProperties } = window.vega;
