import axios from 'axios'

export default async function refreshCredentials({ connectorParameters }) {
  const { clientId, clientSecret } = connectorParameters
  const basic = Buffer.from(`${clientId}:${clientSecret}`).toString('base64')

  const response = await axios.post(
    'https://api.example.com/oauth/token',
    'grant_type=client_credentials',
    {
      headers: {
        Authorization: `Basic ${basic}`,
        'Content-Type': 'application/x-www-form-urlencoded',
      },
    },
  )

  if (!response.data || !response.data.access_token) {
    throw new Error('Failed to refresh credentials: no access token in the response')
  }

  return { accessToken: response.data.access_token }
}
