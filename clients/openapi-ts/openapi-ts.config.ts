import { defineConfig } from '@hey-api/openapi-ts';

// The seed's (Integr8sCode's frontend) configuration, pointed at this
// repository's document: the same three plugins, so the client generated
// here is the one the frontend would generate.
export default defineConfig({
  input: '../../openapi.json',
  output: {
    path: 'src/client',
  },
  plugins: ['@hey-api/typescript', '@hey-api/sdk', '@hey-api/client-fetch'],
});
