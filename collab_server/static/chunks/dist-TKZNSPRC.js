import{a,b,c,d}from"./chunk-M7WKINAZ.js";import"./chunk-DZF6F6LK.js";import"./chunk-ML6IREDV.js";export{d as css,b as cssCompletionSource,c as cssLanguage,a as defineCSSCompletionSource};
