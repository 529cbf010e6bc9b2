import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["node_modules", ".test-build", "build.mjs"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      "no-restricted-syntax": [
        "error",
        { selector: "CallExpression[callee.name='eval']", message: "no eval: the CSP forbids it" },
        { selector: "NewExpression[callee.name='Function']", message: "no new Function: the CSP forbids it" },
      ],
      "no-restricted-properties": ["error", { property: "outerHTML", message: "build elements with h()" }, { object: "document", property: "write" }],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
    },
  },
);
